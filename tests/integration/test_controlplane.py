"""Proof that the test control plane is a real Kubernetes API server, not a stand-in."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support.controlplane import (
    REPO,
    ControlPlane,
    controlplane_bin_dir,
    pinned_versions,
    run_controlplane,
    wait_established,
)

pytestmark = pytest.mark.integration


def pinned_k8s_version() -> str:
    return pinned_versions()["K8S_VERSION"]


def test_version_is_the_pinned_release(api: client.ApiClient) -> None:
    info = client.VersionApi(api).get_code()
    assert info.git_version == pinned_k8s_version()
    assert info.git_tree_state == "clean"


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.lab.onprem.example"},
    "spec": {
        "group": "lab.onprem.example",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["address"],
                                "properties": {
                                    "address": {
                                        "type": "string",
                                        "x-kubernetes-validations": [
                                            {"rule": "isIP(self)", "message": "address must be an IP address"}
                                        ],
                                    },
                                    "replicas": {"type": "integer", "minimum": 1},
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_crd_schema_and_cel_validation(api: client.ApiClient, namespace: str) -> None:
    ext = client.ApiextensionsV1Api(api)
    try:
        ext.create_custom_resource_definition(WIDGET_CRD)
    except ApiException as exc:
        if exc.status != 409:
            raise
    wait_established(api, "widgets.lab.onprem.example")
    co = client.CustomObjectsApi(api)

    def widget(name: str, spec: dict[str, object]) -> dict[str, object]:
        return {"apiVersion": "lab.onprem.example/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}

    created = co.create_namespaced_custom_object(
        "lab.onprem.example", "v1", namespace, "widgets", widget("good", {"address": "192.0.2.10", "replicas": 2})
    )
    assert created["spec"]["address"] == "192.0.2.10"
    invalid: list[tuple[str, dict[str, object], str]] = [
        ("no-address", {"replicas": 1}, "spec.address: Required value"),
        ("bad-type", {"address": "192.0.2.10", "replicas": "two"}, "spec.replicas: Invalid value"),
        ("too-few", {"address": "192.0.2.10", "replicas": 0}, "should be greater than or equal to 1"),
        ("not-an-ip", {"address": "not-an-ip"}, "address must be an IP address"),
    ]
    for name, spec, expected in invalid:
        with pytest.raises(ApiException) as err:
            co.create_namespaced_custom_object("lab.onprem.example", "v1", namespace, "widgets", widget(name, spec))
        assert err.value.status == 422, name
        assert expected in json.loads(err.value.body)["message"], name


def test_loadbalancer_service_gets_cluster_ip_and_node_ports(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    svc = core.create_namespaced_service(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {
                "type": "LoadBalancer",
                "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080},
                    {"name": "https", "port": 443, "targetPort": 8443},
                ],
            },
        },
    )
    assert ipaddress.ip_address(svc.spec.cluster_ip) in ipaddress.ip_network("10.96.0.0/12")
    node_ports = [p.node_port for p in svc.spec.ports]
    assert all(30000 <= p <= 32767 for p in node_ports) and len(set(node_ports)) == 2
    # Nothing allocates an external address yet: that is the load balancer's job.
    assert not (svc.status.load_balancer and svc.status.load_balancer.ingress)

    dual = core.create_namespaced_service(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "dual"},
            "spec": {"type": "LoadBalancer", "ipFamilyPolicy": "RequireDualStack", "ports": [{"port": 80}]},
        },
    )
    assert dual.spec.ip_families == ["IPv4", "IPv6"]
    assert dual.spec.cluster_ips[1].startswith("fd00:10:96::")


def test_rbac_denies_then_allows_a_service_account(
    controlplane: ControlPlane, api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    rbac = client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    token = core.create_namespaced_service_account_token(
        "reader", namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token

    sa_config = client.Configuration()
    base = api.configuration
    sa_config.host = base.host
    sa_config.ssl_ca_cert = base.ssl_ca_cert
    sa_config.api_key = {"authorization": f"Bearer {token}"}
    sa_core = client.CoreV1Api(client.ApiClient(sa_config))

    with pytest.raises(ApiException) as err:
        sa_core.list_namespaced_service(namespace)
    assert err.value.status == 403
    assert f"system:serviceaccount:{namespace}:reader" in err.value.body

    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "services-reader"},
            "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "services-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    deadline = time.monotonic() + 10  # the RBAC authorizer's cache follows the binding quickly
    while True:
        try:
            sa_core.list_namespaced_service(namespace)
            break
        except ApiException as exc:
            if exc.status != 403 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    # Still scoped: the binding grants services in this namespace only.
    with pytest.raises(ApiException) as err:
        sa_core.list_namespaced_secret(namespace)
    assert err.value.status == 403


def run_playbook(playbook: Path, kubeconfig: Path, namespace: str) -> dict[str, object]:
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_NOCOLOR="1")
    result = subprocess.run(
        [
            "ansible-playbook",
            str(playbook),
            "-e",
            f"proof_kubeconfig={kubeconfig}",
            "-e",
            f"proof_namespace={namespace}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def task_results(report: dict[str, object], name: str) -> dict[str, object]:
    for play in report["plays"]:  # type: ignore[attr-defined]
        for task in play["tasks"]:
            if task["task"]["name"] == name:
                return task["hosts"]["localhost"]  # type: ignore[no-any-return]
    raise AssertionError(f"task {name!r} not in report")


def test_kubernetes_core_modules_work_from_a_playbook(controlplane: ControlPlane, namespace: str) -> None:
    playbook = REPO / "tests/integration/playbooks/kubernetes_core.yml"
    first = run_playbook(playbook, controlplane.kubeconfig, namespace)
    assert task_results(first, "Create a ConfigMap")["changed"] is True
    info = task_results(first, "Read it back")
    assert info["resources"][0]["data"] == {"pool": "192.0.2.0/28"}  # type: ignore[index]
    second = run_playbook(playbook, controlplane.kubeconfig, namespace)
    assert task_results(second, "Create a ConfigMap")["changed"] is False


def test_up_status_down_leaves_no_process(tmp_path: Path) -> None:
    """The CLI contract: kubectl sees the pinned version; down leaves nothing running."""
    directory = tmp_path / "cp"
    up = run_controlplane("up", "--dir", str(directory))
    try:
        assert up.returncode == 0, up.stderr
        status = run_controlplane("status", "--dir", str(directory))
        assert status.returncode == 0 and "kube-apiserver" in status.stdout
        pids = json.loads((directory / "state.json").read_text())["pids"]
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
        kubectl = controlplane_bin_dir() / "kubectl"
        version = subprocess.run(
            [str(kubectl), "--kubeconfig", str(directory / "admin.kubeconfig"), "version", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert json.loads(version.stdout)["serverVersion"]["gitVersion"] == pinned_k8s_version()
    finally:
        down = run_controlplane("down", "--dir", str(directory))
    assert down.returncode == 0, down.stderr
    # A stopped child may sit as a zombie for a moment until init reaps it; give that 5 s.
    deadline = time.monotonic() + 5
    survivors = [pid for pid in pids.values() if Path(f"/proc/{pid}").exists()]
    while survivors and time.monotonic() < deadline:
        time.sleep(0.1)
        survivors = [pid for pid in survivors if Path(f"/proc/{pid}").exists()]
    assert not survivors, f"processes survived `down`: {survivors}"
    assert run_controlplane("status", "--dir", str(directory)).returncode == 3
