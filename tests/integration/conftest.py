"""A real control plane for the whole test session.

By default the session starts its own etcd + kube-apiserver + kube-controller-manager with
lab/bin/controlplane in a temporary directory and stops it at the end. Set
ONPREM_TEST_KUBECONFIG to run against a control plane you already have instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.support.controlplane import (
    CRD_DIR,
    POLICY_DIR,
    ControlPlane,
    LbController,
    kubectl,
    run_controlplane,
    wait_established,
)


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


@pytest.fixture(scope="session")
def metallb_crds(controlplane: ControlPlane, api: client.ApiClient) -> None:
    """The collection's metallb.io CRDs and admission policy, applied as the lb_controller role does."""
    kubectl(controlplane.kubeconfig, "apply", "-f", str(CRD_DIR))
    for path in sorted(CRD_DIR.glob("*.yaml")):
        wait_established(api, path.name.removesuffix(".yaml"))
    kubectl(controlplane.kubeconfig, "apply", "-f", str(POLICY_DIR))


@pytest.fixture
def lb_controller(
    controlplane: ControlPlane, metallb_crds: None, tmp_path: Path
) -> Iterator[Callable[..., LbController]]:
    """Start controllers with `lb_controller(*args)`; all are stopped (SIGTERM) after the test."""
    started: list[LbController] = []

    def start(*args: str, kubeconfig: Path | None = None) -> LbController:
        ctl = LbController(kubeconfig or controlplane.kubeconfig, tmp_path / f"controller-{len(started)}.log", *args)
        started.append(ctl)
        return ctl

    yield start
    for ctl in started:
        ctl.stop()
