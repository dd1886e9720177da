"""Is the local kube-apiserver ready? Its ``/readyz``, every ``interval``, with rise and fall.

``/readyz``, not ``/livez``: an apiserver that is alive but cannot reach etcd, has not finished
its post-start hooks, or has begun a graceful shutdown (``--shutdown-delay-duration``: readyz
fails first, while it still serves) is no use behind the shared address, and readyz says so.
Kubernetes lets anonymous clients read it (``system:public-info-viewer``), so the check needs no
credentials. It is loopback only by default, and by default it does not verify the serving
certificate (before ``kubeadm init`` there is no CA to verify against, and only the status code
is read); ``caFile`` turns verification on.

Ready after ``rise`` answers of 200 in a row, not ready after ``fall`` failures in a row (a
refused connection, a timeout, any other status). A killed apiserver refuses at once, so it is
noticed ``fall`` probes later.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable

import httpx

from onprem_lb.control_plane.settings import Health

log = logging.getLogger("onprem_lb.control_plane")


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Readiness:
    """Probes ``settings.url``; ``ready`` is the debounced result, ``on_change`` is told each flip."""

    def __init__(self, settings: Health, on_change: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.on_change = on_change
        self.ready = False
        self._run = 0  # consecutive results agreeing with the latest (positive: ok, negative: failed)
        self._client = httpx.AsyncClient(
            verify=ssl_context(settings.ca_file),
            timeout=settings.timeout,
            trust_env=False,  # never through a proxy: the apiserver probed is this node's
            limits=httpx.Limits(max_keepalive_connections=0),  # a fresh connection each time
        )

    async def probe(self) -> tuple[bool, str]:
        try:
            response = await self._client.get(self.settings.url)
        except httpx.HTTPError as exc:
            return False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if response.status_code == 200:
            return True, "200"
        return False, f"HTTP {response.status_code}: {response.text.strip()[:200]}"

    def record(self, ok: bool, what: str) -> bool:
        """Take one probe's result; whether ``ready`` flipped."""
        self._run = max(self._run, 0) + 1 if ok else min(self._run, 0) - 1
        flip = (not self.ready and self._run >= self.settings.rise) or (self.ready and -self._run >= self.settings.fall)
        if flip:
            self.ready = not self.ready
            log.info(
                "local kube-apiserver %s (%s: %s)", "ready" if self.ready else "not ready", self.settings.url, what
            )
        return flip

    async def run(self) -> None:
        """Probe until cancelled."""
        try:
            while True:
                started = time.monotonic()
                if self.record(*await self.probe()):
                    self.on_change()
                await asyncio.sleep(max(0.0, self.settings.interval - (time.monotonic() - started)))
        finally:
            await self._client.aclose()
