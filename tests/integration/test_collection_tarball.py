"""The built collection tarball, installed into a fresh path, is all site.yml needs.

Builds the tarball as `make build` does, installs it with ansible-galaxy into a temporary
collections path (no access to this checkout), and runs the installed playbooks from there:
the site playbook parses, and the preflight stage checks the example inventory for real (its
checks run on the Ansible controller, so the example's hosts need not exist), converting a
MetalLB ConfigMap with the engine file shipped in the tarball.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.controlplane import REPO

VERSION = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
BIN = Path(sys.executable).parent


def run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """(the installed collection's root, an environment that sees only that installation)."""
    if not (REPO / "roles" / "lb_engine" / "files" / "onprem-lb.pyz").is_file():
        pytest.fail("the engine file is not built: run `make dist` (make test does)", pytrace=False)
    tmp = tmp_path_factory.mktemp("tarball")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(tmp / "collections"), ANSIBLE_HOME=str(tmp / "ansible-home"))
    build = run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp), str(REPO)], env, tmp)
    assert build.returncode == 0, build.stdout + build.stderr
    tarball = tmp / f"onprem-ingress-{VERSION}.tar.gz"
    install = run(
        [
            str(BIN / "ansible-galaxy"),
            "collection",
            "install",
            "--no-deps",
            "-p",
            str(tmp / "collections"),
            str(tarball),
        ],
        env,
        tmp,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    yield tmp / "collections" / "ansible_collections" / "onprem" / "ingress", env


def test_the_tarball_carries_what_the_roles_need(installed: tuple[Path, dict[str, str]]) -> None:
    root, _ = installed
    for needed in [
        "roles/lb_engine/files/onprem-lb.pyz",
        "roles/lb_controller/files/crds/ipaddresspools.metallb.io.yaml",
        "roles/lb_controller/files/policies/service-annotations.yaml",
        "playbooks/site.yml",
        "playbooks/doctor.yml",
        "inventories/example/hosts.yml",
    ]:
        assert (root / needed).is_file(), needed
    shipped = (root / "roles/lb_engine/files/onprem-lb.pyz").read_bytes()
    assert shipped == (REPO / "roles/lb_engine/files/onprem-lb.pyz").read_bytes()
    for left_out in ["src", "tests/e2e", "extensions", "lab", "dist"]:
        assert not (root / left_out).exists(), f"{left_out} is not for Galaxy users"


def test_the_installed_site_playbook_parses(installed: tuple[Path, dict[str, str]]) -> None:
    root, env = installed
    cmd = [str(BIN / "ansible-playbook"), "-i", str(root / "inventories/example"), "onprem.ingress.site"]
    result = run([*cmd, "--syntax-check"], env, root.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_installed_preflight_checks_the_example_inventory(installed: tuple[Path, dict[str, str]]) -> None:
    """The example inventory passes, with seed 000's ConfigMap converted by the shipped engine
    file; a typo in it does not."""
    root, env = installed
    seed = (REPO / "tests/integration/seeds/seed000-config-pool.yaml").read_text()
    legacy = seed.replace("{ip-start}", "192.168.120.180").replace("{ip-stop}", "192.168.120.190")
    cmd = [str(BIN / "ansible-playbook"), "-i", str(root / "inventories/example"), "onprem.ingress.preflight"]
    good = run([*cmd, "-e", json.dumps({"lb_config_legacy_configmap": legacy})], env, root.parent)
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr
    bad = run([*cmd, "-e", json.dumps({"lb_speaker_heartbeat_prot": 7946})], env, root.parent)
    assert bad.returncode != 0
    assert "did you mean lb_speaker_heartbeat_port" in bad.stdout + bad.stderr
