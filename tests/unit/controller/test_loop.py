"""controller/loop.py: what the controller keeps of a Service."""

from __future__ import annotations

from onprem_lb.controller.loop import slim_service


def test_slim_service_keeps_what_allocation_reads_only() -> None:
    full = {
        "metadata": {
            "name": "web",
            "namespace": "apps",
            "uid": "u",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": {
                "metallb.io/address-pool": "p",
                "kubectl.kubernetes.io/last-applied-configuration": "{...}",
            },
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {
            "type": "LoadBalancer",
            "ports": [{"port": 80, "nodePort": 30080, "targetPort": 8080}],
            "selector": {"app": "web"},
            "externalTrafficPolicy": "Cluster",
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ipMode": "VIP"}]}},
    }
    slim = slim_service(full)
    assert slim["metadata"]["annotations"] == {"metallb.io/address-pool": "p"}
    assert "managedFields" not in slim["metadata"]
    assert slim["spec"]["ports"] == [{"port": 80, "protocol": "TCP"}]
    assert slim["spec"]["selector"] == {}  # only ETP=Local Services need it (backend key)
    assert slim["status"] == {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
