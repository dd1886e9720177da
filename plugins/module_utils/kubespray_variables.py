# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kubespray's own variables whose names start like one of our roles' (kube_proxy_, ingress_,
sysctl_). Users often deploy the cluster with kubespray and then this collection from the same
inventory, so these names are set there on purpose: the preflight typo check
(onprem.ingress.unknown_role_variables) lets them through. Names only, no values.

Read on 2026-12-08 from kubernetes-sigs/kubespray (several stored versions; a name a later
release dropped stays, since an older inventory still sets it):
  inventory/sample/group_vars/k8s_cluster/k8s-cluster.yml and addons.yml (earlier k8s-cluster/),
  roles/kubespray-defaults/defaults/main/main.yml, kube-proxy.yml and download.yml,
  roles/kubernetes/control-plane/defaults/main/kube-proxy.yml,
  roles/kubernetes/node/defaults/main.yml, roles/kubernetes/preinstall/defaults/main.yml,
  roles/kubernetes-apps/ingress_controller/ingress_nginx/defaults/main.yml,
  roles/kubernetes-apps/ingress_controller/ambassador/defaults/main.yml,
  roles/kubernetes-apps/ingress_controller/meta/main.yml (the *_enabled switches),
  roles/win_nodes/kubernetes_patch/defaults/main.yml, docs/ansible/variable_reference.yml.
No kubespray name starts with control_plane_address_, host_network_ or lb_.

One of them is also an option of ours: ingress_publish_status_address (the address written into
Ingress status, for kubespray's ingress-nginx and for our ingress role's nodeport exposure; both
treat "" as unset).
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

KUBESPRAY_VARIABLES = frozenset(
    [
        "ingress_alb_controller_digest_checksum",
        "ingress_alb_enabled",
        "ingress_ambassador_enabled",
        "ingress_ambassador_extra_args",
        "ingress_ambassador_host_network",
        "ingress_ambassador_insecure_port",
        "ingress_ambassador_multi_namespaces",
        "ingress_ambassador_namespace",
        "ingress_ambassador_replicas",
        "ingress_ambassador_secure_port",
        "ingress_ambassador_update_window",
        "ingress_ambassador_version",
        "ingress_nginx_class",
        "ingress_nginx_configmap",
        "ingress_nginx_configmap_tcp_services",
        "ingress_nginx_configmap_udp_services",
        "ingress_nginx_controller_digest_checksum",
        "ingress_nginx_controller_image_repo",
        "ingress_nginx_controller_image_tag",
        "ingress_nginx_default",
        "ingress_nginx_enabled",
        "ingress_nginx_extra_args",
        "ingress_nginx_host_network",
        "ingress_nginx_insecure_port",
        "ingress_nginx_kube_webhook_certgen_image_repo",
        "ingress_nginx_kube_webhook_certgen_image_tag",
        "ingress_nginx_metrics_port",
        "ingress_nginx_namespace",
        "ingress_nginx_nodeselector",
        "ingress_nginx_opentelemetry_enabled",
        "ingress_nginx_opentelemetry_image_repo",
        "ingress_nginx_opentelemetry_image_tag",
        "ingress_nginx_probe_initial_delay_seconds",
        "ingress_nginx_secure_port",
        "ingress_nginx_service_annotations",
        "ingress_nginx_service_nodeport_http",
        "ingress_nginx_service_nodeport_https",
        "ingress_nginx_service_type",
        "ingress_nginx_termination_grace_period_seconds",
        "ingress_nginx_tolerations",
        "ingress_nginx_version",
        "ingress_nginx_webhook_enabled",
        "ingress_nginx_webhook_job_ttl",
        "ingress_nginx_without_class",
        "ingress_publish_status_address",
        "ingress_traefik_enabled",
        "kube_proxy_bind_address",
        "kube_proxy_client_accept_content_types",
        "kube_proxy_client_burst",
        "kube_proxy_client_content_type",
        "kube_proxy_client_kubeconfig",
        "kube_proxy_client_qps",
        "kube_proxy_config_sync_period",
        "kube_proxy_conntrack_max",
        "kube_proxy_conntrack_max_per_core",
        "kube_proxy_conntrack_min",
        "kube_proxy_conntrack_tcp_close_wait_timeout",
        "kube_proxy_conntrack_tcp_established_timeout",
        "kube_proxy_enable_profiling",
        "kube_proxy_exclude_cidrs",
        "kube_proxy_feature_gates",
        "kube_proxy_healthz_bind_address",
        "kube_proxy_image_repo",
        "kube_proxy_ipvs_modules",
        "kube_proxy_masquerade_all",
        "kube_proxy_masquerade_bit",
        "kube_proxy_metrics_bind_address",
        "kube_proxy_min_sync_period",
        "kube_proxy_mode",
        "kube_proxy_nodeport_addresses",
        "kube_proxy_nodeport_addresses_cidr",
        "kube_proxy_nodeselector",
        "kube_proxy_oom_score_adj",
        "kube_proxy_port_range",
        "kube_proxy_remove",
        "kube_proxy_scheduler",
        "kube_proxy_strict_arp",
        "kube_proxy_sync_period",
        "kube_proxy_tcp_fin_timeout",
        "kube_proxy_tcp_timeout",
        "kube_proxy_udp_idle_timeout",
        "kube_proxy_udp_timeout",
        "sysctl_file_path",
    ]
)
