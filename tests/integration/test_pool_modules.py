"""onprem.ingress.lb_pool / lb_pool_info / lb_address run through Ansible against the real control plane."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support.ansible import run_module
from tests.support.controlplane import ControlPlane

pytestmark = pytest.mark.integration

POOL_NS = "metallb-system"
SEEDS = Path(__file__).resolve().parent / "seeds"


# -- lb_pool: pure validation --------------------------------------------------------------------


def test_lb_pool_normalises_and_builds_resources() -> None:
    result = run_module(
        "lb_pool",
        {
            "pools": [
                {"name": "default", "addresses": ["192.0.2.0-192.0.2.15", "2001:db8::/64"], "avoidBuggyIPs": True},
                {"name": "manual", "addresses": ["198.51.100.10-198.51.100.20"], "auto_assign": False},
            ],
            "service_cidrs": ["10.96.0.0/12"],
        },
    )
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["pools"][0]["size"] == {"IPv4": 15, "IPv6": 2**64}
    assert result["resources"][1] == {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "manual", "namespace": POOL_NS},
        "spec": {"addresses": ["198.51.100.10-198.51.100.20"], "autoAssign": False, "avoidBuggyIPs": False},
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            {"pools": [{"name": "a", "addresses": ["192.0.2.0/25"]}, {"name": "b", "addresses": ["192.0.2.64/26"]}]},
            "pools 'a' and 'b' share 192.0.2.64/26",
        ),
        (
            {"pools": [{"name": "a", "addresses": ["10.96.0.0/28"]}], "service_cidrs": ["10.96.0.0/12"]},
            "pool 'a' overlaps the service CIDRs at 10.96.0.0/28",
        ),
        (
            {"pools": [{"name": "a", "addresses": ["192.0.2.7/24"]}], "strict_cidrs": True},
            "write 192.0.2.0/24 for the whole network",
        ),
        ({"pools": [{"name": "My_Pool", "addresses": ["192.0.2.0/28"]}]}, "pools[0].name: 'My_Pool' is not a DNS-1123"),
        (
            {"pools": [{"name": "a", "addresses": ["192.0.2.0/28"]}], "namespace": "Bad NS!"},
            "namespace: 'Bad NS!' is not",
        ),
        ({"pools": [{"name": "a", "addresses": ["192.0.2.0/24"], "autoassign": True}]}, "autoassign"),
        (
            {
                "pools": [{"name": "default", "addresses": ["192.168.120.10-192.168.120.20"]}],
                "node_cidrs": ["192.168.120.0/24"],
                "node_addresses": ["192.168.120.11", "192.168.120.12"],
            },
            "pool 'default' contains 192.168.120.11 (node address), 192.168.120.12 (node address), which no "
            "Service may get (a Service holding one would fight the node or the subnet over ARP/NDP); leave them "
            "out of the pool, e.g. addresses: [192.168.120.10/32, 192.168.120.13-192.168.120.20]",
        ),
        (
            {"pools": [{"name": "default", "addresses": ["192.168.120.0/24"]}], "node_cidrs": ["192.168.120.0/24"]},
            "192.168.120.0 (the network address of node subnet 192.168.120.0/24)",
        ),
        (
            {"pools": [{"name": "a", "addresses": ["192.0.2.0/28"]}], "node_addresses": ["not-an-ip"]},
            "node_addresses entry 'not-an-ip' is not an IP address; write each address a node holds",
        ),
        (
            {
                "pools": [{"name": "a", "addresses": ["192.0.2.0/28"]}],
                "node_cidrs": ["192.0.2.0/24"],
                "l2_pools": ["b"],
            },
            "l2_pools names 'b', which is not among the pools (a)",
        ),
    ],
)
def test_lb_pool_rejects_bad_input_clearly(args: dict[str, Any], message: str) -> None:
    result = run_module("lb_pool", args)
    assert result.get("failed") is True
    assert message in result["msg"]
    assert "Traceback" not in json.dumps(result)


def seed000_pools(ip_range: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Seed 000's MetalLB 0.12 ConfigMap as lb_pool pools, and the names of its layer2 pools."""
    text = (SEEDS / "seed000-config-pool.yaml").read_text().replace("{ip-start}-{ip-stop}", ip_range)
    config = yaml.safe_load(yaml.safe_load(text)["data"]["config"])
    pools = [{"name": p["name"], "addresses": p["addresses"]} for p in config["address-pools"]]
    return pools, [p["name"] for p in config["address-pools"] if p.get("protocol") == "layer2"]


def test_lb_pool_seed000_layer2_pool_inside_the_node_subnet_passes() -> None:
    """MetalLB: "the allocated addresses must be part of the host network" -- so no conflict, no warning."""
    pools, l2 = seed000_pools("192.168.120.200-192.168.120.250")
    assert l2 == ["default"]
    args = {
        "pools": pools,
        "node_cidrs": ["192.168.120.0/24"],
        "node_addresses": ["192.168.120.11", "192.168.120.12", "192.168.120.13"],
        "service_cidrs": ["10.96.0.0/12"],
        "pod_cidrs": ["10.244.0.0/16"],
    }
    for extra in ({}, {"l2_pools": l2}):
        result = run_module("lb_pool", {**args, **extra})
        assert not result.get("failed"), result
        assert result["l2_warnings"] == [] and not result.get("warnings"), result
        assert result["resources"][0]["spec"]["addresses"] == ["192.168.120.200-192.168.120.250"]


def test_lb_pool_warns_about_a_layer2_pool_outside_every_node_subnet() -> None:
    args: dict[str, Any] = {
        "pools": [
            {"name": "default", "addresses": ["192.168.120.200-192.168.120.250"]},
            {"name": "elsewhere", "addresses": ["198.51.100.0/28"]},
        ],
        "node_cidrs": ["192.168.120.0/24"],
        "node_addresses": ["192.168.120.11"],
    }
    result = run_module("lb_pool", args)  # l2_pools omitted: every pool is layer 2
    assert not result.get("failed"), result
    (warning,) = result["l2_warnings"]
    assert warning["pool"] == "elsewhere" and warning["addresses"] == ["198.51.100.0/28"]
    assert "no host on the segment can reach it by ARP" in warning["msg"] and "l2_pools" in warning["msg"]
    assert any(warning["msg"] in w for w in result["warnings"]), result
    result = run_module("lb_pool", {**args, "l2_pools": ["default"]})  # "elsewhere" is announced by BGP
    assert not result.get("failed") and result["l2_warnings"] == [] and not result.get("warnings"), result


# -- against the cluster -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pools_in_cluster(controlplane: ControlPlane, metallb_crds: None) -> Iterator[ControlPlane]:
    """The collection's real CRDs; pools and Services as a controller would have left them."""
    api = controlplane.api_client()
    core = client.CoreV1Api(api)
    for ns in (POOL_NS, "apps"):
        try:
            core.create_namespace({"metadata": {"name": ns}})
        except ApiException as exc:
            if exc.status != 409:
                raise
    custom = client.CustomObjectsApi(api)
    for name, spec in {
        "default": {"addresses": ["192.0.2.240/29"]},
        "manual": {"addresses": ["198.51.100.0/30"], "autoAssign": False},
    }.items():
        custom.create_namespaced_custom_object(
            "metallb.io",
            "v1beta1",
            POOL_NS,
            "ipaddresspools",
            {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": name}, "spec": spec},
        )
    # Two Services that already hold addresses (as a load balancer would have written them).
    for name, ip in (("web", "192.0.2.240"), ("db", "192.0.2.242")):
        core.create_namespaced_service(
            "apps",
            {"metadata": {"name": name}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}},
        )
        core.patch_namespaced_service_status(name, "apps", {"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})
    core.create_namespaced_service(
        "apps", {"metadata": {"name": "ingress"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 443}]}}
    )
    yield controlplane
    for name in ("default", "manual"):
        custom.delete_namespaced_custom_object("metallb.io", "v1beta1", POOL_NS, "ipaddresspools", name)
    for svc in ("web", "db", "ingress"):
        core.delete_namespaced_service(svc, "apps")


def test_lb_pool_info_reports_usage_and_holders(pools_in_cluster: ControlPlane) -> None:
    result = run_module("lb_pool_info", {"kubeconfig": str(pools_in_cluster.kubeconfig)})
    assert not result.get("failed"), result
    by_name = {p["name"]: p for p in result["pools"]}
    assert by_name["default"]["size"] == {"IPv4": 8, "IPv6": 0}
    assert by_name["default"]["used"] == {"IPv4": 2, "IPv6": 0}
    assert by_name["default"]["free"] == {"IPv4": 6, "IPv6": 0}
    assert by_name["default"]["holders"] == {"192.0.2.240": ["apps/web"], "192.0.2.242": ["apps/db"]}
    assert by_name["manual"]["used"] == {"IPv4": 0, "IPv6": 0}
    missing = run_module("lb_pool_info", {"kubeconfig": str(pools_in_cluster.kubeconfig), "name": "nope"})
    assert missing["failed"] and "pool 'nope' not found" in missing["msg"] and "default, manual" in missing["msg"]


def test_lb_address_chooses_deterministically_and_reserves_idempotently(pools_in_cluster: ControlPlane) -> None:
    kc = str(pools_in_cluster.kubeconfig)
    chosen = run_module("lb_address", {"kubeconfig": kc, "service": "apps/ingress"})
    assert chosen["addresses"] == ["192.0.2.241"] and chosen["pool"] == "default" and chosen["changed"] is False
    assert run_module("lb_address", {"kubeconfig": kc, "service": "apps/ingress"})["addresses"] == ["192.0.2.241"]
    assert run_module("lb_address", {"kubeconfig": kc, "service": "apps/web"})["addresses"] == ["192.0.2.240"]
    assert run_module("lb_address", {"kubeconfig": kc, "service": "apps/other", "pool": "manual"})["addresses"] == [
        "198.51.100.0"
    ]

    core = client.CoreV1Api(pools_in_cluster.api_client())
    dry = run_module(
        "lb_address", {"kubeconfig": kc, "service": "apps/ingress", "reserve": True}, check=True, diff=True
    )
    assert dry["changed"] is True and dry["diff"]["after"] == {"metallb.io/loadBalancerIPs": "192.0.2.241"}
    assert "metallb.io/loadBalancerIPs" not in (
        core.read_namespaced_service("ingress", "apps").metadata.annotations or {}
    )

    first = run_module("lb_address", {"kubeconfig": kc, "service": "apps/ingress", "reserve": True})
    assert first["changed"] is True
    assert (
        core.read_namespaced_service("ingress", "apps").metadata.annotations["metallb.io/loadBalancerIPs"]
        == "192.0.2.241"
    )
    second = run_module("lb_address", {"kubeconfig": kc, "service": "apps/ingress", "reserve": True})
    assert second["changed"] is False and second["addresses"] == ["192.0.2.241"]


def test_lb_address_errors_are_actionable(pools_in_cluster: ControlPlane, tmp_path: Path) -> None:
    kc = str(pools_in_cluster.kubeconfig)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kubeconfig": str(tmp_path / "missing"), "service": "apps/x"}, "(option kubeconfig): no such file"),
        ({"kubeconfig": kc, "service": "no-namespace"}, "service must be namespace/name"),
        ({"kubeconfig": kc, "service": "apps/x", "pool": "ghost"}, "pool 'ghost', which does not exist"),
        ({"kubeconfig": kc, "service": "apps/ghost", "reserve": True}, "create it before reserving"),
        (
            {"kubeconfig": kc, "service": "apps/x", "pool_namespace": "empty-ns-without-pools", "pool": "default"},
            "does not exist",
        ),
    ]
    for args, message in cases:
        result = run_module("lb_address", args)
        assert result.get("failed") is True, args
        assert message in result["msg"], (args, result["msg"])
        assert "Traceback" not in json.dumps(result)


@pytest.mark.parametrize(
    ("text", "context", "expected"),
    [
        ("", None, "it is empty"),
        ("- a\n", None, "it is a YAML list"),
        ("kind: Config\nusers: []\n", None, "it has no clusters"),
        (None, "prod", "it has no context 'prod'"),
    ],
)
def test_the_modules_name_a_bad_kubeconfig(
    pools_in_cluster: ControlPlane, tmp_path: Path, text: str | None, context: str | None, expected: str
) -> None:
    """Class 2 of the bad-input issue, through the modules as Ansible runs them: one line naming
    the file, the option and the fix, never a traceback (every shape: tests/unit/test_bad_input_access.py)."""
    path = tmp_path / "kubeconfig"
    path.write_text(text if text is not None else pools_in_cluster.kubeconfig.read_text())
    for module, args in (("lb_pool_info", {}), ("lb_address", {"service": "apps/x"})):
        call = dict(args, kubeconfig=str(path), **({"context": context} if context else {}))
        result = run_module(module, call)
        assert result.get("failed") is True, (module, result)
        assert result["msg"].startswith(f"kubeconfig {path} (option kubeconfig): {expected}"), (module, result["msg"])
        assert "Traceback" not in json.dumps(result)
