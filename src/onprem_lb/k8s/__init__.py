"""Kubernetes access, one place for each mechanism: the client and what its errors mean
(client), list+watch caches (informer), Events (events), leader election (leader).

All HTTP goes through lightkube. An Informer keeps a local copy of one resource: it lists,
then watches from the list's resourceVersion; a 410 Gone (history compacted) relists and
reports what changed meanwhile; a dropped connection or an API server restart resumes the
watch from the last version seen, with capped exponential backoff.
"""

from onprem_lb.k8s.client import (
    GROUP,
    RESOURCES,
    TRANSIENT,
    BGPPeer,
    IPAddressPool,
    KubeAccessError,
    L2Advertisement,
    RepeatedFailure,
    ServiceBGPStatus,
    ServiceL2Status,
    close_client,
    explain,
    key_of,
    load_config,
    make_client,
    to_plain,
    unanswered,
)
from onprem_lb.k8s.events import EventRecorder
from onprem_lb.k8s.informer import Informer

__all__ = [
    "GROUP",
    "RESOURCES",
    "TRANSIENT",
    "BGPPeer",
    "EventRecorder",
    "IPAddressPool",
    "Informer",
    "KubeAccessError",
    "L2Advertisement",
    "RepeatedFailure",
    "ServiceBGPStatus",
    "ServiceL2Status",
    "close_client",
    "explain",
    "key_of",
    "load_config",
    "make_client",
    "to_plain",
    "unanswered",
]
