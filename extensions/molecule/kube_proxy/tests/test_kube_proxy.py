"""onprem.ingress.kube_proxy against a real kube-apiserver + kube-controller-manager.

The tests run in order and change the cluster: converged state first, then check mode, the
refusals, the node check, other modes, and last a cluster without kube-proxy.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

KUBECONFIG = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / (
    ".cache/molecule-controlplane/kube_proxy/admin.kubeconfig"
)
SEED = yaml.safe_load((Path(__file__).parents[1] / "vars" / "seed.yml").read_text())["lab_seed"]
ANNOTATION = "onprem.ingress/kube-proxy-config"
NS, NAME = "kube-system", "kube-proxy"
ROLE_ONLY = "kube_proxy.yml"


@pytest.fixture(scope="module")
def api() -> Iterator[client.ApiClient]:
    yield config.new_client_from_config(config_file=str(KUBECONFIG))


def config_conf(api: client.ApiClient) -> str:
    return str(client.CoreV1Api(api).read_namespaced_config_map(NAME, NS).data["config.conf"])


def daemonset(api: client.ApiClient) -> Any:
    return client.AppsV1Api(api).read_namespaced_daemon_set(NAME, NS)


def set_config(api: client.ApiClient, **changes: Any) -> None:
    """Put the seed's config.conf back, with top-level or ipvs changes."""
    conf = yaml.safe_load(SEED["configmap"]["data"]["config.conf"])
    for key, value in changes.items():
        if key == "strictARP":
            conf["ipvs"]["strictARP"] = value
        else:
            conf[key] = value
    body = {"data": {"config.conf": yaml.safe_dump(conf)}}
    client.CoreV1Api(api).patch_namespaced_config_map(NAME, NS, body)


def test_strict_arp_is_set_as_a_data_change(api: client.ApiClient) -> None:
    after = yaml.safe_load(config_conf(api))
    before = yaml.safe_load(SEED["configmap"]["data"]["config.conf"])
    assert after["ipvs"]["strictARP"] is True
    before["ipvs"]["strictARP"] = True
    assert after == before  # nothing else touched


def test_kube_proxy_was_restarted_and_rolled_out(api: client.ApiClient) -> None:
    ds = daemonset(api)
    expected = hashlib.sha256(config_conf(api).encode()).hexdigest()[:16]
    assert ds.spec.template.metadata.annotations[ANNOTATION] == expected
    assert ds.metadata.generation == 2  # created, then restarted once (idempotence did not restart)
    assert ds.status.observed_generation == ds.metadata.generation


def test_check_mode_reports_the_change_and_changes_nothing(playbook: Callable[..., Any], api: client.ApiClient) -> None:
    set_config(api, strictARP=False)
    generation = daemonset(api).metadata.generation
    run = playbook(ROLE_ONLY, check=True, diff=True)
    assert run.rc == 0, run.report
    write = run.task_results("Write ipvs.strictARP=true into config.conf (only when it differs)")
    assert write and write[0]["changed"], run.report
    assert "strictARP: true" in str(write[0].get("diff")), run.report
    assert yaml.safe_load(config_conf(api))["ipvs"]["strictARP"] is False
    assert daemonset(api).metadata.generation == generation


def test_refused_strict_arp_fails_fast_with_what_to_change(playbook: Callable[..., Any], api: client.ApiClient) -> None:
    run = playbook(ROLE_ONLY, extra_vars={"kube_proxy_manage_strict_arp": False})
    assert run.rc != 0
    message = " ".join(run.failed_messages())
    assert "IPVS mode with ipvs.strictARP false" in message, run.report
    assert "Set kube_proxy_manage_strict_arp: true" in message
    assert "nftables" in message
    assert yaml.safe_load(config_conf(api))["ipvs"]["strictARP"] is False


def test_bgp_only_does_not_need_strict_arp(playbook: Callable[..., Any], api: client.ApiClient) -> None:
    extra = {"kube_proxy_manage_strict_arp": False, "kube_proxy_l2_announcing": False}
    run = playbook(ROLE_ONLY, extra_vars=extra)
    assert run.rc == 0, run.report
    assert yaml.safe_load(config_conf(api))["ipvs"]["strictARP"] is False


def test_ipvs_mode_warns_and_strict_arp_restarts(playbook: Callable[..., Any], api: client.ApiClient) -> None:
    generation = daemonset(api).metadata.generation
    run = playbook(ROLE_ONLY)
    assert run.rc == 0, run.report
    assert any("IPVS mode is deprecated upstream" in str(r.get("msg")) for r in run.results)
    assert yaml.safe_load(config_conf(api))["ipvs"]["strictARP"] is True
    ds = daemonset(api)
    assert ds.metadata.generation == generation + 1
    assert ds.status.observed_generation == ds.metadata.generation


def test_nodes_without_strict_arp_settings_are_reported(
    playbook: Callable[..., Any], nodes: list[Any], api: client.ApiClient
) -> None:
    nodes[1].check_output("sysctl -w net.ipv4.conf.all.arp_announce=0")
    try:
        run = playbook(ROLE_ONLY)
        assert run.rc != 0
        message = " ".join(run.failed_messages())
        assert "On mol-kproxy-2 the ARP settings strictARP stands for are not in force" in message, run.report
        assert "all: arp_announce 0" in message
        assert run.stats["mol-kproxy-1"]["failures"] == 0
    finally:
        nodes[1].check_output("sysctl -w net.ipv4.conf.all.arp_announce=2")


def test_nftables_mode_is_left_alone(playbook: Callable[..., Any], api: client.ApiClient) -> None:
    set_config(api, mode="nftables", strictARP=False)
    run = playbook(ROLE_ONLY)
    assert run.rc == 0, run.report
    assert any("kube-proxy mode: nftables" in str(r.get("msg")) for r in run.results), run.report
    assert not any("deprecated" in str(r.get("msg")) for r in run.results)
    assert all(run.changed(n) == 0 for n in run.stats)
    assert yaml.safe_load(config_conf(api))["ipvs"]["strictARP"] is False


def test_empty_mode_is_iptables(playbook: Callable[..., Any], api: client.ApiClient) -> None:
    set_config(api, mode="")
    run = playbook(ROLE_ONLY)
    assert run.rc == 0, run.report
    assert any("kube-proxy mode: iptables" in str(r.get("msg")) for r in run.results), run.report


def test_broken_config_is_a_clear_error(playbook: Callable[..., Any], api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.patch_namespaced_config_map(NAME, NS, {"data": {"config.conf": "kind: Something\nmode: ipvs\n"}})
    run = playbook(ROLE_ONLY)
    assert run.rc != 0
    assert any("is not a KubeProxyConfiguration" in m for m in run.failed_messages()), run.report
    assert "Traceback" not in run.output


def test_no_kube_proxy_at_all(playbook: Callable[..., Any], api: client.ApiClient) -> None:
    client.CoreV1Api(api).delete_namespaced_config_map(NAME, NS)
    client.AppsV1Api(api).delete_namespaced_daemon_set(NAME, NS)
    run = playbook(ROLE_ONLY)
    assert run.rc == 0, run.report
    assert any("kube-proxy mode: none" in str(r.get("msg")) for r in run.results), run.report
    assert all(run.changed(n) == 0 for n in run.stats)
