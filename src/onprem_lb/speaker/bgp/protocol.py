"""BGP behind the speaker's protocol interface: what to announce (``announce``, pure), FRR's
configuration (``frr``, pure), applied through FRR's tools (``driver``), ServiceBGPStatus objects.

A change is applied ``debounce`` seconds after it is seen (a burst of Services is one apply):
a change of routes only as vtysh commands (``incremental``, tens of milliseconds), anything
else with frr-reload.py (about a second), which also runs once after ``RECONCILE_AFTER``
seconds of quiet to check the whole text. A failed apply is retried with backoff, as a full
reload, until FRR takes it; the last text FRR took is kept, so an unchanged decision costs
nothing. The sessions' state is read every ``poll`` seconds into metrics and a log line per
change; a bgpd that came back empty is given the whole text again (``restore``).

A fenced speaker withdraws every route: one whose Lease is not renewed and that may not hold by
membership (speaker/layer2/quorum.py) - while the API server is down for everyone, the speakers
that hear a majority keep their sessions and routes, and BFD or the hold time still withdraws a
dead node's next hop at the router. A speaker that stops (SIGTERM)
leaves FRR as it is: FRR runs on its own, so a restarting speaker costs the routers nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Secret

from onprem_lb import address_states, metrics
from onprem_lb.k8s import TRANSIENT, BGPPeer, EventRecorder, Informer, ServiceBGPStatus, explain, unanswered
from onprem_lb.speaker import statuses
from onprem_lb.speaker.bgp import announce, frr
from onprem_lb.speaker.bgp.driver import Frr, FrrError, Session
from onprem_lb.speaker.statuses import NODE_LABEL, SVC_NAME_LABEL, SVC_NS_LABEL
from onprem_lb.speaker.view import View

log = logging.getLogger("onprem_lb.speaker.bgp")
SECRET_REFRESH = 30.0  # seconds between reads of the passwordSecrets
RECONCILE_AFTER = 30.0  # seconds of quiet after route-only changes before a full frr-reload.py
DOWN_GRACE = 20.0  # seconds a session may take to come up before a Warning Event says it did not


def status_name(svc_key: str, node: str) -> str:
    """One ServiceBGPStatus per (Service, node), named so: one writer per object."""
    return "bgp-" + hashlib.sha256(f"{svc_key}#{node}".encode()).hexdigest()[:16]


def _peer_object(plain: dict[str, Any]) -> dict[str, Any]:
    """What BGP mode needs of a BGPPeer beyond the config model: its inline password (never in
    the model) and its identity, for Events about its sessions."""
    meta = plain.get("metadata") or {}
    value = (plain.get("spec") or {}).get("password")
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
        "password": value if isinstance(value, str) and value else None,
    }


def _secret_password(plain: dict[str, Any]) -> str | None:
    """The ``password`` of a kubernetes.io/basic-auth Secret (MetalLB's passwordSecret)."""
    data = plain.get("data") or {}
    raw = data.get("password") if isinstance(data, dict) else None
    if not isinstance(raw, str):
        return None
    try:
        return base64.b64decode(raw, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None


class Bgp:
    name = "bgp"

    def __init__(
        self,
        client: AsyncClient,
        *,
        node: str,
        namespace: str,
        frr_driver: Frr,
        events: EventRecorder,
        debounce: float = 0.1,
        poll: float = 2.0,
    ) -> None:
        self.client = client
        self.node = node
        self.namespace = namespace
        self.frr = frr_driver
        self.events = events
        self.debounce = debounce
        self.poll = poll
        self.peer_objects = Informer(
            client, BGPPeer, _peer_object, self._touch, namespace=namespace, name="bgppeer-objects"
        )
        # passwordSecret values, read by name when a BGPPeer names one (no list or watch of the
        # namespace's Secrets: the RBAC grants get only, and only where BGP uses passwords)
        self.secret_values: dict[str, str] = {}  # "namespace/name" -> password
        self.secret_problems: dict[str, str] = {}  # "namespace/name" -> why it could not be read
        self._wanted_secrets: set[str] = set()
        self._secrets_changed = asyncio.Event()
        self.statuses = Informer(
            client, ServiceBGPStatus, statuses.convert, self._touch, namespace=namespace, name="servicebgpstatuses"
        )
        self.desired = announce.Desired()
        self.text: str | None = None  # what FRR should run
        self.applied: str | None = None  # what FRR took last
        self.skipped: Mapping[str, str] = {}
        self.states: dict[str, str] = {}
        self._published = address_states.Publisher("bgp")  # self.states, on our Lease
        self.sessions: dict[tuple[str, str], Session] = {}
        self.neighbors: dict[tuple[str, str], str] = {}  # (vrf, neighbour) -> BGPPeer name
        self._restore = False  # FRR came back empty: send everything as commands, not a diff
        self._frr_had_ours = False  # FRR showed a session for every neighbour of ours since the last restore
        self.announced: set[str] = set()  # Services told (nodeAssigned) that this node announces them
        self._down_since: dict[tuple[str, str], float] = {}  # not Established since (monotonic)
        self._told_down: set[tuple[str, str]] = set()
        self._pending = asyncio.Event()
        self._status_dirty = asyncio.Event()
        self._wake: Callable[[], None] = lambda: None

    # -- the protocol interface ------------------------------------------------------------------

    def informers(self) -> Sequence[Informer[Any]]:
        return [self.peer_objects, self.statuses]

    def lease_annotations(self) -> Mapping[str, str]:
        return self._published.annotations(self.states)

    async def start(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    async def prepare(self, view: View) -> None:
        return None

    def _touch(self, *_args: Any) -> None:
        self._wake()

    def passwords(self, view: View) -> dict[str, str]:
        out: dict[str, str] = {}
        for peer in view.config.peers:
            if peer.password_secret is not None:
                value = self.secret_values.get("/".join(peer.password_secret))
            else:
                value = (self.peer_objects.items.get(f"{self.namespace}/{peer.name}") or {}).get("password")
            if value is not None:
                out[peer.name] = value
        return out

    def apply(self, view: View) -> None:
        node = view.nodes.get(self.node)
        wanted = {"/".join(p.password_secret) for p in view.config.peers if p.password_secret is not None}
        if wanted != self._wanted_secrets:
            self._wanted_secrets = wanted
            self._secrets_changed.set()
        passwords = self.passwords(view)
        # a peer FRR cannot be told about (its password unknown, its BFD profile missing) gets
        # nothing: the states and ServiceBGPStatus say so, not only the log
        mine, skipped = frr.writable(announce.node_peers(view.config.peers, node), passwords, view.config.bfd_profiles)
        waiting = set()  # peers whose passwordSecret has not been read yet: not an error
        for bgp_peer in view.config.peers:  # say why a Secret's password is unknown, when we know
            ref = "/".join(bgp_peer.password_secret) if bgp_peer.password_secret else ""
            if bgp_peer.name in skipped and ref in self.secret_problems:
                skipped[bgp_peer.name] = self.secret_problems[ref]
            elif bgp_peer.name in skipped and ref and ref not in self.secret_values:
                skipped[bgp_peer.name] = f"its passwordSecret {ref} is not read yet"
                waiting.add(bgp_peer.name)
        self.neighbors = {(p.vrf, p.peer_address or p.interface or ""): p.name for p in mine}
        self.desired = announce.desired(
            view.services,
            node=node,
            may_announce=view.may_announce,
            endpoints=view.endpoints,
            ads=view.config.bgp_advertisements,
            peers=mine,
            pool_of=view.config.pool_of,
            pool_labels=view.config.pool_labels,
        )
        rendered = frr.render(
            hostname=socket.gethostname(),
            peers=mine,
            routes=self.desired.routes,
            passwords=passwords,
            bfd_profiles=view.config.bfd_profiles,
        )
        for peer, why in sorted(skipped.items()):
            if self.skipped.get(peer) != why:
                level = logging.INFO if peer in waiting else logging.ERROR
                log.log(level, "BGPPeer %s left out of FRR's configuration: %s", peer, why)
        self.skipped = skipped
        self._report_states(self.desired.states)
        for key in sorted(self.desired.services.keys() - self.announced):  # as MetalLB's speaker says it
            ns, _, name = key.partition("/")
            message = f'announcing from node "{self.node}" with protocol "bgp"'
            self.events.record({"namespace": ns, "name": name}, "Normal", "nodeAssigned", message)
        self.announced = set(self.desired.services)
        metrics.bgp_prefixes.set(len(self.desired.prefixes()))
        if rendered.text != self.text:
            self.text = rendered.text
            self._pending.set()

    async def run(self, view: Callable[[], View]) -> None:
        await asyncio.gather(self._applier(), self._poller(), self._status_writer(), self._secret_reader())

    async def stop(self, view: Callable[[], View]) -> None:
        """FRR keeps announcing what it was told (see the module's doc); our statuses go."""
        with contextlib.suppress(asyncio.TimeoutError):  # the API may be gone: they are stale, not wrong
            await asyncio.wait_for(self._delete_own_statuses(), 2.0)

    def close(self) -> None:
        return None

    # -- applying --------------------------------------------------------------------------------

    async def _applier(self) -> None:
        backoff = 0.5
        reconcile = False  # the last change went as vtysh commands: check the whole text when quiet
        while True:
            if reconcile:
                try:
                    await asyncio.wait_for(self._pending.wait(), RECONCILE_AFTER)
                except asyncio.TimeoutError:
                    self._pending.set()
                    self.applied = None  # quiet for a while: frr-reload.py compares everything once
            await self._pending.wait()
            await asyncio.sleep(self.debounce)  # a burst of changes: one apply
            self._pending.clear()
            text = self.text
            if text is None or text == self.applied:
                continue
            started = time.perf_counter()
            try:
                if self._restore:
                    how = await self.frr.restore(text)
                    self._restore = False
                else:
                    how = await self.frr.apply(text, self.applied)
            except FrrError as exc:
                metrics.frr_reloads.labels("failed").inc()
                log.error("FRR did not take the configuration (%s); retrying in %.1f s", exc, backoff)
                self.applied = None  # FRR's state is unknown now: the retry is a full reload
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                self._pending.set()
                continue
            backoff = 0.5
            reconcile = how in ("incremental", "restore")
            metrics.frr_reloads.labels(how).inc()
            metrics.frr_reload_seconds.labels(how).observe(time.perf_counter() - started)
            log.info("FRR configuration applied (%s): %d prefixes", how, len(self.desired.prefixes()))
            self.applied = text
            self._status_dirty.set()

    async def _secret_reader(self) -> None:
        """Read the passwordSecrets the BGPPeers name: when that set changes, and every
        ``SECRET_REFRESH`` seconds (a rotated password reaches FRR within that)."""
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._secrets_changed.wait(), SECRET_REFRESH)
            self._secrets_changed.clear()
            values, problems = {}, {}
            for ref in sorted(self._wanted_secrets):
                namespace, name = ref.split("/", 1)
                try:
                    secret = await self.client.get(Secret, name, namespace=namespace)
                except (ApiError, *TRANSIENT) as exc:
                    if ref in self.secret_values and unanswered(exc):
                        # the API did not answer (an outage): the password last read stays in
                        # force, as the rest of the configuration does; only an answer changes it
                        values[ref] = self.secret_values[ref]
                        continue
                    problems[ref] = f"cannot read its passwordSecret {ref}: {explain(exc, namespace)}"
                    continue
                value = _secret_password({"data": secret.data or {}})
                if value is None:
                    problems[ref] = f"its passwordSecret {ref} holds no password (a kubernetes.io/basic-auth Secret)"
                else:
                    values[ref] = value
            if (values, problems) != (self.secret_values, self.secret_problems):
                self.secret_values, self.secret_problems = values, problems
                self._wake()

    async def _poller(self) -> None:
        while True:
            try:
                sessions = {(s.vrf, s.peer): s for s in await self.frr.sessions()}
            except FrrError as exc:
                log.debug("cannot read BGP sessions: %s", exc)
                sessions = {}
            else:
                self._check_frr_has_ours(sessions)
            for key, session in sessions.items():
                before = self.sessions.get(key)
                if before is None or before.state != session.state:
                    (log.info if session.state == "Established" else log.warning)(
                        "BGP session to %s%s: %s%s",
                        session.peer,
                        f" (vrf {session.vrf})" if session.vrf else "",
                        session.state,
                        f" (last reset: {session.last_reset})" if session.last_reset else "",
                    )
                self._tell(key, session, before)
                metrics.bgp_session_up.labels(session.peer, session.vrf).set(int(session.state == "Established"))
            for gone in self.sessions.keys() - sessions.keys():
                with contextlib.suppress(KeyError):
                    metrics.bgp_session_up.remove(gone[1], gone[0])
            self.sessions = sessions
            await asyncio.sleep(self.poll)

    def _check_frr_has_ours(self, sessions: Mapping[tuple[str, str], Session]) -> None:
        """bgpd restarted (an upgrade, a crash) starts from FRR's own file, without what we told
        it: a neighbour of ours missing from FRR means the whole text goes again."""
        missing = [peer for key, peer in self.neighbors.items() if key not in sessions]
        if not missing:
            self._frr_had_ours = True
            return
        # only after FRR showed them all once: a neighbour FRR never shows (a VRF the kernel
        # lacks, say) must not make us send everything every poll
        if self._frr_had_ours and self.applied is not None and self.applied == self.text:
            self._frr_had_ours = False
            log.warning("FRR lost the configuration (no session for %s): applying it again", ", ".join(sorted(missing)))
            self.applied = None
            self._restore = True
            self._pending.set()

    def _tell(self, key: tuple[str, str], session: Session, before: Session | None) -> None:
        """Events on the BGPPeer: a session that went down, or never came up within
        ``DOWN_GRACE`` seconds (a wrong password or ASN looks like that), and its recovery."""
        peer = self.peer_objects.items.get(f"{self.namespace}/{self.neighbors.get(key, '')}")
        now = time.monotonic()
        if session.state == "Established":
            self._down_since.pop(key, None)
            if key in self._told_down and peer is not None:
                self.events.record(
                    peer, "Normal", "SessionEstablished",
                    f"node {self.node}: BGP session to {session.peer} established", kind="BGPPeer",
                    api_version="metallb.io/v1beta2",
                )  # fmt: skip
            self._told_down.discard(key)
            return
        since = self._down_since.setdefault(key, now)
        was_up = before is not None and before.state == "Established"
        if key in self._told_down or peer is None or not (was_up or now - since >= DOWN_GRACE):
            return
        self._told_down.add(key)
        reset = f"; FRR's last reset: {session.last_reset}" if session.last_reset else ""
        self.events.record(
            peer, "Warning", "SessionDown",
            f"node {self.node}: BGP session to {session.peer} is {session.state}{reset}. Check the "
            "router's address and ASNs, the password on both sides, and that the router accepts "
            "this node as a neighbour", kind="BGPPeer", api_version="metallb.io/v1beta2",
        )  # fmt: skip

    def _report_states(self, states: Mapping[str, str]) -> None:
        for ip, state in sorted(states.items()):
            before = self.states.get(ip)
            if before != state:
                (log.debug if before is None and state == announce.ANNOUNCING else log.info)(
                    "%s: %s (was %s)", ip, state, before or "unknown"
                )
        self.states = dict(states)

    # -- ServiceBGPStatus ------------------------------------------------------------------------

    def _desired_statuses(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for key, peers in self.desired.services.items():
            ns, name = key.split("/", 1)
            out[status_name(key, self.node)] = {
                "labels": {NODE_LABEL: self.node, SVC_NS_LABEL: ns, SVC_NAME_LABEL: name},
                "status": {"node": self.node, "serviceName": name, "serviceNamespace": ns, "peers": sorted(peers)},
            }
        return out

    async def _status_writer(self) -> None:
        while True:
            await self._status_dirty.wait()
            self._status_dirty.clear()
            await asyncio.sleep(0.2)  # coalesce
            try:
                await self._write_statuses()
            except (ApiError, *TRANSIENT) as exc:
                log.warning("writing ServiceBGPStatus failed (%s); retrying", getattr(exc, "status", exc))
                self._status_dirty.set()
                await asyncio.sleep(1.0)

    async def _write_statuses(self) -> None:
        desired = self._desired_statuses()
        for key, have in list(self.statuses.items.items()):
            if have["labels"].get(NODE_LABEL) == self.node and have["name"] not in desired:
                with contextlib.suppress(ApiError):
                    await self.client.delete(ServiceBGPStatus, have["name"], namespace=self.namespace)
                self.statuses.items.pop(key, None)
        for name, entry in desired.items():
            have = self.statuses.items.get(f"{self.namespace}/{name}")
            await statuses.put(self.client, ServiceBGPStatus, self.namespace, name=name, entry=entry, have=have)

    async def _delete_own_statuses(self) -> None:
        await statuses.delete_own(
            self.client, ServiceBGPStatus, self.namespace, self.node, self.statuses.items.values()
        )
