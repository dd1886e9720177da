"""A real control plane for the whole test session.

By default the session starts its own etcd + kube-apiserver + kube-controller-manager with
lab/bin/controlplane in a temporary directory and stops it at the end. Set
ONPREM_TEST_KUBECONFIG to run against a control plane you already have instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config

REPO = Path(__file__).resolve().parents[2]
CONTROLPLANE = REPO / "lab" / "bin" / "controlplane"


def pinned_versions() -> dict[str, str]:
    """lab/controlplane/versions.env as a dict (K8S_VERSION, ETCD_VERSION)."""
    lines = (REPO / "lab" / "controlplane" / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def controlplane_bin_dir() -> Path:
    """Where lab/bin/controlplane finds its binaries (same rule as the script)."""
    v = pinned_versions()
    default = REPO / ".cache" / "controlplane" / f"k8s-{v['K8S_VERSION']}-etcd-{v['ETCD_VERSION']}"
    return Path(os.environ.get("ONPREM_CONTROLPLANE_BIN", default))


@dataclass(frozen=True)
class ControlPlane:
    kubeconfig: Path
    directory: Path | None  # None when the session was given an external control plane

    def api_client(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.kubeconfig))


def wait_established(api: client.ApiClient, crd_name: str, timeout: float = 30) -> None:
    """Wait (bounded) until the API server serves a CustomResourceDefinition."""
    ext = client.ApiextensionsV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition(crd_name)
        if any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or [])):
            return
        time.sleep(0.2)
    raise AssertionError(f"CRD {crd_name} not Established after {timeout}s")


def run_controlplane(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CONTROLPLANE), *args], capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="session")
def controlplane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    external = os.environ.get("ONPREM_TEST_KUBECONFIG")
    if external:
        yield ControlPlane(kubeconfig=Path(external), directory=None)
        return
    directory = tmp_path_factory.mktemp("controlplane")
    up = run_controlplane("up", "--dir", str(directory))
    if up.returncode != 0:
        run_controlplane("down", "--dir", str(directory))
        pytest.fail(f"lab/bin/controlplane up failed:\n{up.stdout}\n{up.stderr}", pytrace=False)
    try:
        yield ControlPlane(kubeconfig=directory / "admin.kubeconfig", directory=directory)
    finally:
        run_controlplane("down", "--dir", str(directory))


@pytest.fixture(scope="session")
def api(controlplane: ControlPlane) -> client.ApiClient:
    return controlplane.api_client()


@pytest.fixture
def namespace(api: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, named after the test."""
    name = "t-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:50].strip("-")
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)
