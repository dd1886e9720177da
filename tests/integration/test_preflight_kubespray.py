"""playbooks/preflight.yml on an inventory shared with kubespray (issue 28): passes, keeps the values.

The temporary inventory is the lab's (inventories/lab: its groups, hosts, host and group
variables) plus what a kubespray inventory adds: kubespray's groups and, in
group_vars/k8s_cluster, a value for every kubespray variable that starts like one of our roles'
(plugins/module_utils/kubespray_variables.py), the ones kubespray's sample inventory sets with its
sample's values. The hosts are reached with the local connection instead of the lab's podman one:
preflight changes nothing and connects to no node (its checks run on the controller), and no
podman node is needed. All of preflight.yml runs: the typo check, the metallb.io objects and pools
(lb_config validate, on localhost), the ingress settings. A second playbook in the same run shows
the kubespray variables as each host sees them afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from ansible_collections.onprem.ingress.plugins.module_utils.kubespray_variables import KUBESPRAY_VARIABLES

from tests.support.controlplane import REPO

LAB = REPO / "inventories" / "lab"
BIN = Path(sys.executable).parent
HOSTS = ["onprem-lab-n1", "onprem-lab-n2", "onprem-lab-n3"]

# What kubespray's sample group_vars (k8s_cluster/k8s-cluster.yml, addons.yml) set, with the
# sample's values, strictARP on as MetalLB-style announcing needs.
KUBESPRAY_SAMPLE: dict[str, Any] = {
    "kube_proxy_mode": "ipvs",
    "kube_proxy_strict_arp": True,
    "kube_proxy_nodeport_addresses": [],
    "ingress_nginx_enabled": True,
    "ingress_nginx_host_network": False,
    "ingress_publish_status_address": "",
    "ingress_nginx_nodeselector": {"kubernetes.io/os": "linux"},
    "ingress_nginx_tolerations": [
        {"key": "node-role.kubernetes.io/control-plane", "operator": "Equal", "value": "", "effect": "NoSchedule"}
    ],
    "ingress_nginx_namespace": "ingress-nginx",
    "ingress_nginx_insecure_port": 80,
    "ingress_nginx_secure_port": 443,
    "ingress_nginx_configmap": {"map-hash-bucket-size": "128", "ssl-protocols": "TLSv1.2 TLSv1.3"},
    "ingress_nginx_configmap_tcp_services": {"9000": "default/example-go:8080"},
    "ingress_nginx_configmap_udp_services": {"53": "kube-system/coredns:53"},
    "ingress_nginx_extra_args": ["--default-ssl-certificate=default/foo-tls"],
    "ingress_nginx_termination_grace_period_seconds": 300,
    "ingress_nginx_class": "nginx",
    "ingress_nginx_without_class": True,
    "ingress_nginx_default": False,
    "ingress_nginx_service_type": "NodePort",
    "ingress_nginx_service_nodeport_http": 30080,
    "ingress_nginx_service_nodeport_https": 30081,
    "ingress_alb_enabled": False,
}
# The other kubespray variables with our prefixes (its role defaults), with plausible values.
KUBESPRAY_OTHERS: dict[str, Any] = {
    "kube_proxy_bind_address": "0.0.0.0",  # noqa: S104  # a value in a file, nothing binds
    "kube_proxy_client_accept_content_types": "",
    "kube_proxy_client_burst": 10,
    "kube_proxy_client_content_type": "application/vnd.kubernetes.protobuf",
    "kube_proxy_client_kubeconfig": "",
    "kube_proxy_client_qps": 5,
    "kube_proxy_config_sync_period": "15m0s",
    "kube_proxy_conntrack_max": 0,
    "kube_proxy_conntrack_max_per_core": 32768,
    "kube_proxy_conntrack_min": 131072,
    "kube_proxy_conntrack_tcp_close_wait_timeout": "1h0m0s",
    "kube_proxy_conntrack_tcp_established_timeout": "24h0m0s",
    "kube_proxy_enable_profiling": False,
    "kube_proxy_exclude_cidrs": [],
    "kube_proxy_feature_gates": [],
    "kube_proxy_healthz_bind_address": "0.0.0.0:10256",
    "kube_proxy_image_repo": "registry.k8s.io/kube-proxy",
    "kube_proxy_ipvs_modules": ["ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh"],
    "kube_proxy_masquerade_all": False,
    "kube_proxy_masquerade_bit": 14,
    "kube_proxy_metrics_bind_address": "127.0.0.1:10249",
    "kube_proxy_min_sync_period": "0s",
    "kube_proxy_nodeport_addresses_cidr": "203.0.113.160/28",
    "kube_proxy_nodeselector": "kubernetes.io/os",
    "kube_proxy_oom_score_adj": -999,
    "kube_proxy_port_range": "",
    "kube_proxy_remove": False,
    "kube_proxy_scheduler": "rr",
    "kube_proxy_sync_period": "30s",
    "kube_proxy_tcp_fin_timeout": "0s",
    "kube_proxy_tcp_timeout": "0s",
    "kube_proxy_udp_idle_timeout": "250ms",
    "kube_proxy_udp_timeout": "0s",
    "sysctl_file_path": "/etc/sysctl.d/99-sysctl.conf",
    "ingress_alb_controller_digest_checksum": "",
    "ingress_ambassador_enabled": False,
    "ingress_ambassador_extra_args": [],
    "ingress_ambassador_host_network": False,
    "ingress_ambassador_insecure_port": 80,
    "ingress_ambassador_multi_namespaces": False,
    "ingress_ambassador_namespace": "ambassador",
    "ingress_ambassador_replicas": 1,
    "ingress_ambassador_secure_port": 443,
    "ingress_ambassador_update_window": "0 0 * * SUN",
    "ingress_ambassador_version": "*",
    "ingress_nginx_controller_digest_checksum": "",
    "ingress_nginx_controller_image_repo": "registry.k8s.io/ingress-nginx/controller",
    "ingress_nginx_controller_image_tag": "v1.12.0",
    "ingress_nginx_kube_webhook_certgen_image_repo": "registry.k8s.io/ingress-nginx/kube-webhook-certgen",
    "ingress_nginx_kube_webhook_certgen_image_tag": "v1.5.0",
    "ingress_nginx_metrics_port": 10254,
    "ingress_nginx_opentelemetry_enabled": False,
    "ingress_nginx_opentelemetry_image_repo": "registry.k8s.io/ingress-nginx/opentelemetry",
    "ingress_nginx_opentelemetry_image_tag": "v20230721-3e2062ee5",
    "ingress_nginx_probe_initial_delay_seconds": 10,
    "ingress_nginx_service_annotations": {},
    "ingress_nginx_version": "v1.12.0",
    "ingress_nginx_webhook_enabled": False,
    "ingress_nginx_webhook_job_ttl": 1800,
    "ingress_traefik_enabled": False,
}
KUBESPRAY = {**KUBESPRAY_SAMPLE, **KUBESPRAY_OTHERS}
# each of them as the host sees it: {name: value}
SHOW = "{{ dict(__names | zip(__names | map('extract', hostvars[inventory_hostname]))) }}"


def write_inventory(root: Path, host_vars: dict[str, dict[str, Any]] | None = None) -> Path:
    """The lab inventory with kubespray's groups and variables added, under root/inventory."""
    inventory = root / "inventory"
    shutil.copytree(LAB / "group_vars", inventory / "group_vars")
    hosts = yaml.safe_load((LAB / "hosts.yml").read_text())
    # local connection instead of podman_pipelined; the rest of the lab's all.vars stays
    hosts["all"]["vars"].update(ansible_connection="local", ansible_python_interpreter=sys.executable)
    hosts["all"]["children"]["k8s_cluster"] = {
        "children": {
            "kube_control_plane": {"hosts": {"onprem-lab-n1": None}},
            "kube_node": {"hosts": dict.fromkeys(HOSTS)},
        }
    }
    hosts["all"]["children"]["etcd"] = {"hosts": {"onprem-lab-n1": None}}
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    # where a kubespray inventory keeps them
    kubespray_vars = inventory / "group_vars" / "k8s_cluster"
    kubespray_vars.mkdir()
    cluster = {k: v for k, v in KUBESPRAY.items() if not k.startswith("ingress_")}
    addons = {k: v for k, v in KUBESPRAY.items() if k.startswith("ingress_")}
    (kubespray_vars / "k8s-cluster.yml").write_text(yaml.safe_dump(cluster, sort_keys=True))
    (kubespray_vars / "addons.yml").write_text(yaml.safe_dump(addons, sort_keys=True))
    for host, values in (host_vars or {}).items():
        (inventory / "host_vars").mkdir(exist_ok=True)
        (inventory / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump(values))
    return inventory


def run_preflight(root: Path, inventory: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    """preflight.yml, then a playbook that shows the kubespray variables per host; the JSON
    callback's document when the output is one."""
    show = root / "show.yml"
    names = sorted(KUBESPRAY)
    show.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Show the kubespray variables as the hosts see them",
                    "hosts": "k8s_nodes:control_plane:lb_speakers",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Show them",
                            "ansible.builtin.debug": {"msg": SHOW},
                            "vars": {"__names": names},
                        }
                    ],
                }
            ],
            sort_keys=False,
        )
    )
    env = dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
    )
    cmd = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(REPO / "playbooks" / "preflight.yml"), str(show)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=root, check=False)
    # one JSON document per playbook, each with the plays so far: the last one has them all
    decoder, text, at, report = json.JSONDecoder(), out.stdout, 0, None
    try:
        while text[at:].strip():
            report, at = decoder.raw_decode(text, len(text) - len(text[at:].lstrip()))
    except json.JSONDecodeError:
        return out, None
    return out, report


def test_every_kubespray_variable_has_a_value_here() -> None:
    assert set(KUBESPRAY) == set(KUBESPRAY_VARIABLES)
    assert not set(KUBESPRAY_SAMPLE) & set(KUBESPRAY_OTHERS)


def test_preflight_passes_an_inventory_shared_with_kubespray_and_keeps_its_values(tmp_path: Path) -> None:
    out, report = run_preflight(tmp_path, write_inventory(tmp_path))
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-3000:]
    assert report is not None
    preflight, show = report["plays"]
    # the typo check ran on every host, and the checks on the controller ran too
    tasks = {t["task"]["name"].split(" : ")[-1]: t["hosts"] for t in preflight["tasks"]}
    typo_check = tasks["Stop on variables no role knows (typos)"]
    assert sorted(typo_check) == HOSTS
    for checked in [
        "Stop on variables no role knows (typos)",
        "Check the pools (overlaps, node addresses, Service and Pod CIDRs, layer 2 reach)",
        "Stop on settings the exposure cannot use",
        "Build the objects once (a setting the filter refuses stops here, named)",
    ]:
        results = tasks[checked].values()
        assert results and not any(r.get("failed") or r.get("skipped") for r in results), (checked, results)
    # the values are the inventory's, on every host, after preflight
    (shown,) = show["tasks"]
    assert sorted(shown["hosts"]) == HOSTS
    for host, result in shown["hosts"].items():
        assert result["msg"] == KUBESPRAY, host


def test_preflight_still_stops_on_a_typo_in_that_inventory(tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path, {"onprem-lab-n2": {"kube_proxy_manage_strickt_arp": False}})
    out, _ = run_preflight(tmp_path, inventory)
    assert out.returncode != 0
    assert (
        "kube_proxy_manage_strickt_arp is not a variable of the onprem.ingress.kube_proxy role; "
        "did you mean kube_proxy_manage_strict_arp?"
    ) in out.stdout + out.stderr
