"""Client set-up, the metallb.io resources, and what an API error means to a user."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import httpx
import yaml
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.config.kubeconfig import SingleConfig
from lightkube.core.exceptions import ConfigError
from lightkube.generic_resource import create_namespaced_resource

from onprem_lb import metallb_kinds
from onprem_lb.kubeconfig import kubeconfig_problem

log = logging.getLogger("onprem_lb.k8s")

GROUP = metallb_kinds.GROUP
# kind -> lightkube resource, for every metallb.io kind (metallb_kinds.KINDS)
RESOURCES: dict[str, Any] = {
    k.kind: create_namespaced_resource(GROUP, k.version, k.kind, k.plural) for k in metallb_kinds.KINDS
}
IPAddressPool = RESOURCES["IPAddressPool"]
L2Advertisement = RESOURCES["L2Advertisement"]
BGPPeer = RESOURCES["BGPPeer"]
ServiceL2Status = RESOURCES["ServiceL2Status"]
ServiceBGPStatus = RESOURCES["ServiceBGPStatus"]

# Errors that mean "the API server is not reachable right now": retry, never crash.
TRANSIENT = (httpx.TransportError, OSError, asyncio.TimeoutError)


def unanswered(exc: BaseException) -> bool:
    """The API server gave no answer about the object: unreachable, timed out, overloaded or
    failing (429, 5xx). A 403 or 404 is an answer (not allowed, or gone); so is any other 4xx."""
    if isinstance(exc, ApiError):
        code = exc.status.code
        return code is None or code == 429 or code >= 500
    return True


class KubeAccessError(Exception):
    """No usable cluster credentials; the message says where we looked."""


def explain(exc: BaseException, namespace: str | None = None) -> str:
    """An API or transport failure in one line: the real cause and what to change (never a raw
    ``Status(...)``)."""
    code: int | None = None
    message = ""
    status = getattr(exc, "status", None)
    if isinstance(exc, ApiError) and status is not None:
        code, message = status.code, str(status.message or status.reason or "")
    elif isinstance(exc, httpx.HTTPStatusError):
        code, message = exc.response.status_code, exc.response.reason_phrase
    if code == 401:
        return (
            "the API server refused our credentials (HTTP 401 Unauthorized): the token or client certificate in"
            " the kubeconfig is wrong, expired or for another cluster; check --kubeconfig"
        )
    if code == 403:
        return (
            f"forbidden (HTTP 403): {message}; this identity lacks the RBAC for it (the onprem.ingress.lb_controller"
            " role grants what the engine needs)"
        )
    if code == 404 and namespace and "namespaces" in message:
        return f"namespace {namespace} does not exist (HTTP 404); create it, or pass --namespace with the right one"
    if code is not None:
        return f"HTTP {code}: {message or 'no message'}"
    text = str(exc) or type(exc).__name__
    return f"cannot reach the API server ({text}); check the server URL in the kubeconfig and the network"


class RepeatedFailure:
    """Logs a failure that repeats (a retry loop) with growing gaps: the first at once, then at
    most once per 2 s, 4 s, ... up to 5 minutes, saying how many were not logged; a different
    message is logged at once. ``ok()`` logs the recovery."""

    def __init__(self, logger: logging.Logger, what: str, ceiling: float = 300.0) -> None:
        self.logger, self.what, self.ceiling = logger, what, ceiling
        self.count = 0
        self.silenced = 0
        self.last_text = ""
        self.next_at = 0.0
        self.gap = 2.0

    def failed(self, text: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.count += 1
        changed = text != self.last_text
        if changed or now >= self.next_at:
            more = f" ({self.silenced} more since the last message)" if self.silenced and not changed else ""
            self.logger.warning("%s: %s%s", self.what, text, more)
            self.gap = 2.0 if changed else min(self.ceiling, self.gap * 2)
            self.last_text, self.next_at, self.silenced = text, now + self.gap, 0
        else:
            self.silenced += 1

    def ok(self) -> None:
        if self.count:
            self.logger.info("%s: works again after %d failure(s)", self.what, self.count)
        self.count, self.silenced, self.last_text, self.next_at, self.gap = 0, 0, "", 0.0, 2.0


def load_config(kubeconfig: str | None, context: str | None = None) -> SingleConfig:
    """kubeconfig file (flag, then KUBECONFIG), else the in-cluster service account."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    source = "--kubeconfig" if kubeconfig else "$KUBECONFIG"
    try:
        if path:
            problem = kubeconfig_problem(path, context)
            if problem:
                raise KubeAccessError(f"kubeconfig {path} ({source}): {problem}")
            single = KubeConfig.from_file(path).get(context_name=context)
        else:
            single = KubeConfig.from_service_account().get()
    except (ConfigError, KeyError, ValueError, OSError, AttributeError, TypeError, yaml.YAMLError) as exc:
        where = path or "the in-cluster service account"
        raise KubeAccessError(f"cannot use {where}: {exc}; pass --kubeconfig PATH (and --context NAME)") from None
    if single is None:
        raise KubeAccessError(f"{path}: no context to use; set current-context or pass --context NAME")
    return single


def make_client(config: SingleConfig, field_manager: str) -> AsyncClient:
    # trust_env=False: never route API traffic through proxy variables of the host.
    return AsyncClient(
        config=config, field_manager=field_manager, trust_env=False, timeout=httpx.Timeout(15.0, read=330.0)
    )


async def close_client(client: AsyncClient) -> None:
    await client.close()  # type: ignore[no-untyped-call]  # (lightkube 0.x has no annotation here)


def key_of(meta: Mapping[str, Any]) -> str:
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


def to_plain(obj: Any) -> dict[str, Any]:
    """A lightkube object (model or generic resource) as plain dicts and lists."""
    return obj.to_dict()  # type: ignore[no-any-return]
