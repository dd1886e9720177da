"""speaker/bgp/protocol.py: from a view to FRR's text, passwords, the debounced and retried
reload, Events about sessions, ServiceBGPStatus contents. FRR and the API server are stood in
for; tests/e2e/test_bgp_speaker.py runs the real ones."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Any

import httpx
import pytest
from lightkube import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret

from onprem_lb.config import build_config
from onprem_lb.speaker.bgp import protocol
from onprem_lb.speaker.bgp.driver import FrrError, Session
from onprem_lb.speaker.view import Endpoints, NodeState, ServiceState, View

NS = "metallb-system"


def obj(kind_spec: dict[str, Any], name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}"}, "spec": kind_spec}


CONFIG = build_config(
    [obj({"addresses": ["192.0.2.0/28"]}, "lab")],
    bgp_advertisements=[obj({"ipAddressPools": ["lab"]}, "lab")],
    peers=[
        obj({"myASN": 64512, "peerASN": 64500, "peerAddress": "203.0.113.1", "password": "x"}, "inline"),
        obj({"myASN": 64512, "peerASN": 64500, "peerAddress": "203.0.113.2",
             "passwordSecret": {"name": "router-2", "namespace": NS}}, "secret"),
        obj({"myASN": 64512, "peerASN": 64500, "peerAddress": "203.0.113.3"}, "open"),
    ],
)  # fmt: skip


def view(**kw: Any) -> View:
    args: dict[str, Any] = {
        "node": "n1",
        "config": CONFIG,
        "services": (ServiceState("apps/web", ("192.0.2.5",)),),
        "endpoints": {"apps/web": Endpoints(serving=True)},
        "nodes": {"n1": NodeState("n1")},
        "may_announce": True,
        "leased": frozenset(),
        "lease_annotations": {},
    }
    args.update(kw)
    return View(**args)


class FakeFrr:
    def __init__(self, failures: int = 0) -> None:
        self.applied: list[str] = []
        self.failures = failures

    async def apply(self, text: str, running: str | None = None) -> str:
        if self.failures:
            self.failures -= 1
            raise FrrError("frr-reload.py exited 1: line 9: % Unknown command")
        self.applied.append(text)
        return "reload" if running is None else "incremental"

    async def restore(self, text: str) -> str:
        self.applied.append(text)
        return "restore"


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []

    def record(self, involved: dict[str, Any], type_: str, reason: str, message: str, **kw: Any) -> None:
        self.events.append((involved["name"], type_, reason, message))


def bgp(frr: FakeFrr | None = None) -> tuple[protocol.Bgp, Recorder]:
    events = Recorder()
    client: Any = None  # nothing here reaches the API
    b = protocol.Bgp(client, node="n1", namespace=NS, frr_driver=frr or FakeFrr(), events=events, debounce=0.01)  # type: ignore[arg-type]
    b.peer_objects.items = {f"{NS}/{n}": protocol._peer_object(obj({"password": "x"} if n == "inline" else {}, n))
                            for n in ("inline", "secret", "open")}  # fmt: skip
    return b, events


class SecretsClient:
    """Answers get(Secret) as the API server would: the Secret, or 403 / 404."""

    def __init__(self, secrets: dict[str, Any]) -> None:
        self.secrets = secrets
        self.asked: list[str] = []

    async def get(self, resource: Any, name: str, *, namespace: str) -> Any:
        self.asked.append(f"{namespace}/{name}")
        found = self.secrets[name]
        if isinstance(found, int):
            raise ApiError(response=httpx.Response(found, json={"code": found, "message": f"secrets {name} ..."}))
        return Secret(metadata=ObjectMeta(name=name, namespace=namespace), data=found)


def read_secrets(b: protocol.Bgp, client: SecretsClient) -> None:
    async def once() -> None:
        b.client = client  # type: ignore[assignment]
        b._secrets_changed.set()  # as when the set changes, or its refresh comes
        task = asyncio.create_task(b._secret_reader())
        for _attempt in range(100):  # bounded: one pass
            await asyncio.sleep(0.01)
            if client.asked:
                break
        await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(once())


def test_passwords_come_from_the_object_or_its_secret_and_a_missing_one_leaves_the_peer_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    b, _events = bgp()
    with caplog.at_level(logging.INFO, logger="onprem_lb.speaker.bgp"):
        b.apply(view())
    # before the first read of its Secret: left out, said at info level (every start does this)
    assert b.skipped == {"secret": "its passwordSecret metallb-system/router-2 is not read yet"}
    assert [r.levelname for r in caplog.records if "left out" in r.getMessage()] == ["INFO"]
    assert "neighbor 203.0.113.1 password x" in (b.text or "") and "203.0.113.2" not in (b.text or "")
    read_secrets(b, SecretsClient({"router-2": 403}))
    b.apply(view())
    assert "cannot read its passwordSecret metallb-system/router-2" in b.skipped["secret"]
    encoded = base64.b64encode(b"s3cret").decode()
    read_secrets(b, SecretsClient({"router-2": {"password": encoded}}))
    b.apply(view())
    assert b.skipped == {} and "neighbor 203.0.113.2 password s3cret" in (b.text or "")
    read_secrets(b, SecretsClient({"router-2": {"username": encoded}}))
    b.apply(view())
    assert "holds no password" in b.skipped["secret"]
    assert protocol._secret_password({"data": {"password": "not base64!"}}) is None


def test_a_fenced_speaker_renders_no_route_but_keeps_its_sessions() -> None:
    b, _events = bgp()
    b.apply(view())
    assert "network 192.0.2.5/32" in (b.text or "")
    b.apply(view(may_announce=False))
    assert "  network " not in (b.text or "") and "neighbor 203.0.113.1 remote-as 64500" in (b.text or "")
    assert b.states == {"192.0.2.5": "fenced"} and b.desired.services == {}


def test_a_burst_is_one_reload_and_a_refused_one_is_retried() -> None:
    async def scenario() -> tuple[FakeFrr, protocol.Bgp]:
        frr = FakeFrr(failures=1)
        b, _events = bgp(frr)
        task = asyncio.create_task(b._applier())
        for i in range(5):  # five changes in a row: FRR sees the last one, once it takes it
            svcs = tuple(ServiceState(f"apps/s{j}", (f"192.0.2.{j}",)) for j in range(i + 1))
            b.apply(view(services=svcs, endpoints={s.key: Endpoints(serving=True) for s in svcs}))
        for _ in range(300):  # bounded: the retry comes after 0.5 s
            await asyncio.sleep(0.01)
            if frr.applied:
                break
        task.cancel()
        return frr, b

    frr, b = asyncio.run(scenario())
    assert frr.applied == [b.text] and b.applied == b.text
    assert all(f"network 192.0.2.{j}/32" in frr.applied[0] for j in range(5))


def test_session_events_after_a_drop_or_a_session_that_never_comes_up(monkeypatch: Any) -> None:
    b, events = bgp()
    b.apply(view())
    assert [e[2] for e in events.events] == ["nodeAssigned"]
    events.events.clear()
    key = ("", "203.0.113.1")
    up, active = Session("203.0.113.1", "", "Established", 5, ""), Session("203.0.113.1", "", "Active", 0, "x")
    b._tell(key, up, None)
    b._tell(key, active, up)  # it was up: said at once
    assert events.events[-1][:3] == ("inline", "Warning", "SessionDown")
    b._tell(key, active, active)  # said once
    b._tell(key, up, active)
    assert [e[2] for e in events.events] == ["SessionDown", "SessionEstablished"]
    other = ("", "203.0.113.3")
    connect = Session("203.0.113.3", "", "Connect", 0, "")
    b._tell(other, connect, None)
    assert len(events.events) == 2  # a session coming up takes a moment: nothing yet
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + protocol.DOWN_GRACE + 1)
    b._tell(other, connect, connect)
    assert events.events[-1][:3] == ("open", "Warning", "SessionDown") and "password" in events.events[-1][3]


def test_service_bgp_status_names_the_peers() -> None:
    b, _events = bgp()
    b.apply(view())
    ((name, entry),) = b._desired_statuses().items()
    assert name == protocol.status_name("apps/web", "n1") and name.startswith("bgp-")
    assert entry["status"] == {
        "node": "n1",
        "serviceName": "web",
        "serviceNamespace": "apps",
        "peers": ["inline", "open"],
    }
    assert entry["labels"] == {"metallb.io/node": "n1", "metallb.io/service-namespace": "apps",
                               "metallb.io/service-name": "web"}  # fmt: skip


def test_node_assigned_once_per_service_as_metallb_says_it() -> None:
    b, events = bgp()
    b.apply(view())
    b.apply(view())  # nothing new: nothing said
    assert events.events == [("web", "Normal", "nodeAssigned", 'announcing from node "n1" with protocol "bgp"')]
    b.apply(view(may_announce=False))
    b.apply(view())  # announced again after a pause: said again
    assert len(events.events) == 2


def test_a_restarted_bgpd_gets_the_whole_configuration_again() -> None:
    b, _events = bgp()
    b.apply(view())
    b.applied = b.text
    b._pending.clear()
    up = {("", "203.0.113.1"): Session("203.0.113.1", "", "Established", 1, ""),
          ("", "203.0.113.3"): Session("203.0.113.3", "", "Active", 0, "")}  # fmt: skip
    b._check_frr_has_ours(up)
    assert b.applied == b.text and not b._pending.is_set()  # every neighbour of ours is there
    b._check_frr_has_ours({})  # bgpd came back empty
    assert b.applied is None and b._pending.is_set() and b._restore
    b.applied, b._restore = b.text, False
    b._pending.clear()
    b._check_frr_has_ours({})  # still nothing after the restore: not again and again
    assert b.applied == b.text and not b._pending.is_set()
