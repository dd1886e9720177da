"""Objects the lab's tests and benchmarks create (see `make lab`)."""

from __future__ import annotations

from typing import Any


def web_deployment(name: str, namespace: str, node: str, labels: dict[str, str]) -> dict[str, Any]:
    """One nginx Pod, labelled `labels`, pinned to `node` (the lab's pod runner serves it for real)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"lab-pod": name}},
            "template": {
                "metadata": {"labels": {**labels, "lab-pod": name}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}]}],
                },
            },
        },
    }
