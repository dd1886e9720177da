"""The single-file engine (make dist: dist/onprem-lb-VERSION.pyz) on every Python 3.9 to 3.13.

What the roles install on the nodes is this file, run by the node's own python3 (whatever version
it is). Each interpreter found under ~/.pyenv runs the CLI from the file, and a speaker started
from the file inside a lab node's namespace announces a Service address: exactly one MAC answers
ARP from the client, that node's.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.controlplane import REPO
from tests.support.l2lab import NODES, L2Lab, service_manifest

SEED000 = REPO / "tests" / "integration" / "seeds" / "seed000-config-pool.yaml"
PYENV = Path.home() / ".pyenv" / "versions"
MINORS = ("3.9", "3.10", "3.11", "3.12", "3.13")


def _version_key(python: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", python.parents[1].name))


def _interpreters() -> list[Path]:
    found = {p for minor in MINORS for p in PYENV.glob(f"{minor}.*/bin/python") if os.access(p, os.X_OK)}
    return sorted(found, key=_version_key)


def _params() -> list[object]:
    found = _interpreters()
    if not found:  # a failing test, not an empty (skipped) parametrization
        return [pytest.param(None, id="no-interpreter")]
    # the speaker test runs each interpreter on another node, in turn
    return [pytest.param((p, NODES[i % len(NODES)]), id=f"py{p.parents[1].name}") for i, p in enumerate(found)]


PARAMS = _params()


@pytest.fixture(params=PARAMS)
def interpreter(request: pytest.FixtureRequest) -> tuple[Path, str]:
    """(a python 3.9-3.13 from ~/.pyenv, the lab node its speaker runs on)."""
    if request.param is None:
        pytest.fail(f"no Python {', '.join(MINORS)} found under {PYENV}/<version>/bin/python")
    python, node = request.param
    assert isinstance(python, Path) and isinstance(node, str)
    return python, node


@pytest.fixture(scope="module")
def version() -> str:
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    return str(galaxy["version"])


@pytest.fixture(scope="module")
def engine_file(version: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/onprem-lb-VERSION.pyz as `make dist` left it; built into a temporary path if missing."""
    built = REPO / "dist" / f"onprem-lb-{version}.pyz"
    if built.is_file():
        return built
    venv_python = REPO / ".venv" / "bin" / "python"
    out = tmp_path_factory.mktemp("engine") / built.name
    subprocess.run(
        [str(venv_python if venv_python.exists() else sys.executable), str(REPO / "scripts" / "build_engine.py"),
         str(out)],
        check=True, timeout=600,
    )  # fmt: skip
    return out


def engine_env() -> dict[str, str]:
    """The environment without PYTHONPATH/PYTHONHOME: everything the engine imports is in the file."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=120, check=False, env=engine_env())


# -- the CLI from the file, on every interpreter -----------------------------------------------------


def test_version(interpreter: tuple[Path, str], engine_file: Path, version: str) -> None:
    python, _node = interpreter
    started = time.perf_counter()
    out = run(str(python), str(engine_file), "--version")
    elapsed = time.perf_counter() - started
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"onprem-lb {version}"
    # informative only: how long a cold start of the file takes on this interpreter
    print(f"\n{python.parents[1].name}: `python {engine_file.name} --version` took {elapsed:.2f} s")
    # without site-packages at all (-S): every dependency comes from the file itself
    bare = run(str(python), "-S", str(engine_file), "--version")
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout.strip() == f"onprem-lb {version}"


@pytest.mark.parametrize(
    ("command", "mentions"),
    [
        ((), ("controller", "speaker", "convert-configmap", "--version")),
        (("speaker",), ("--node-name", "--heartbeat-address", "--kubeconfig", "--metrics-address", "--lease-duration")),
        (("controller",), ("--lb-class", "--lease-name", "--kubeconfig", "--metrics-address", "--identity")),
    ],
    ids=["top", "speaker", "controller"],
)
def test_help(interpreter: tuple[Path, str], engine_file: Path, command: tuple[str, ...], mentions: tuple[str]) -> None:
    python, _node = interpreter
    out = run(str(python), str(engine_file), *command, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: onprem-lb"), out.stdout
    missing = [m for m in mentions if m not in out.stdout]
    assert not missing, f"{missing} not in:\n{out.stdout}"


def test_convert_configmap(interpreter: tuple[Path, str], engine_file: Path) -> None:
    python, _node = interpreter
    config_map = SEED000.read_text().replace("{ip-start}-{ip-stop}", "192.0.2.240-192.0.2.250")
    out = run(str(python), str(engine_file), "convert-configmap", "-", stdin=config_map)
    assert out.returncode == 0, out.stderr
    objects = list(yaml.safe_load_all(out.stdout))
    assert [o["kind"] for o in objects] == ["IPAddressPool", "L2Advertisement"]
    assert objects[0] == {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "default", "namespace": "metallb-system"},
        "spec": {"addresses": ["192.0.2.240-192.0.2.250"]},
    }


# -- a speaker from the file in the layer 2 lab ------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[L2Lab]:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces)")
    the_lab = L2Lab(tmp_path_factory.mktemp("l2lab-engine-file"))
    try:
        the_lab.up()
        yield the_lab
    finally:
        the_lab.down()


def test_speaker_from_the_file_announces(interpreter: tuple[Path, str], engine_file: Path, lab: L2Lab) -> None:
    """One speaker, started from the file by this interpreter: it alone answers ARP for the address."""
    python, node = interpreter
    ns = "engine-file-" + re.sub(r"[^a-z0-9]+", "-", python.parents[1].name)
    lab.kubectl("create", "namespace", ns)
    try:
        lab.apply(service_manifest(ns, "web", nodes=NODES))
        (ip,) = lab.service_ips(ns, "web")
        started = time.perf_counter()
        spk = lab.start_speaker(node, engine=(str(python), str(engine_file)))
        try:
            lab.wait_ready((node,), timeout=30)
        except AssertionError as exc:  # the speaker's own words say why (e.g. it cannot reach the API)
            raise AssertionError(f"{exc}\n--- speaker log (tail)\n{spk.log()[-3000:]}") from None
        # the process is the interpreter under test running the file (`ip netns exec` execs it)
        proc = Path("/proc") / str(spk.proc.pid)
        assert (proc / "exe").resolve() == python.resolve()
        assert str(engine_file) in (proc / "cmdline").read_bytes().decode().split("\0")
        lab.wait_owner(ip, node, timeout=30)
        print(f"\n{python.parents[1].name}: speaker from the file on {node} answering in "
              f"{time.perf_counter() - started:.2f} s")  # fmt: skip
        assert lab.macs(ip) == {lab.mac(node)}, spk.log()[-3000:]
        if shutil.which("arping"):
            assert lab.arping_macs(ip) == {lab.mac(node)}, spk.log()[-3000:]
        assert spk.stop(signal.SIGTERM) == 0, spk.log()[-3000:]
        # nothing went wrong on the way (an exception type another Python version names differently...)
        errors = [line for line in spk.log().splitlines() if '"level": "error"' in line]
        assert not errors, "\n".join(errors)[-3000:]
    finally:
        lab.stop_speakers(signal.SIGKILL)
        lab.kubectl("delete", "namespace", ns, "--wait=false", check=False)
