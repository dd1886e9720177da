"""k8s/informer.py: the list+watch cache. Events applied to the items (what is reported to
``on_change`` and what is not), what a relist reports, which resourceVersion each watch resumes
from, when it relists (410 Gone) and when it only backs off (capped exponential backoff).

The Informer takes its client as an argument; here a scripted stand-in plays the API server's
list and watch (lightkube's calling convention: ``list(...)`` is an async iterable with a
``resourceVersion``, ``watch(...)`` yields ``(type, object)``). The informers against a real
kube-apiserver are covered by tests/integration/test_controller.py (1,000 Services kept across a
restart, an API server restart mid-run) and the speaker's by tests/e2e/test_l2_speaker.py.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from lightkube import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Node

from onprem_lb.k8s.informer import Informer

REAL_SLEEP = asyncio.sleep


def cm(name: str, value: str | None, version: str = "1", namespace: str = "apps") -> ConfigMap:
    return ConfigMap(
        metadata=ObjectMeta(name=name, namespace=namespace, resourceVersion=version),
        data=None if value is None else {"v": value},
    )


def value_of(plain: dict[str, Any]) -> str | None:
    """The informer's ``convert``: keep data.v; an object without it is not one of ours."""
    return (plain.get("data") or {}).get("v")


def gone(via: str = "api") -> BaseException:
    """410 Gone, as lightkube raises it: an ApiError from a watch ERROR line, or an httpx
    status error when the watch request itself is refused."""
    if via == "api":
        return ApiError(status={"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"})
    request = httpx.Request("GET", "https://192.0.2.1:6443/api/v1/configmaps")
    return httpx.HTTPStatusError("gone", request=request, response=httpx.Response(410, request=request))


def refused(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "https://192.0.2.1:6443/api/v1/configmaps")
    return httpx.HTTPStatusError(str(code), request=request, response=httpx.Response(code, request=request))


Step = tuple[str, Any] | BaseException  # a watch event, or an error the watch raises


class Listing:
    def __init__(self, version: str, objects: Iterable[Any]) -> None:
        self._version = version
        self.objects = list(objects)
        self.resourceVersion = ""  # known once iteration starts, as lightkube's

    async def __aiter__(self) -> AsyncIterator[Any]:
        self.resourceVersion = self._version
        for obj in self.objects:
            yield obj


@dataclass
class ScriptedServer:
    """Each list() takes the next (version, objects) or error; each watch() the next script of
    steps. A watch whose script is used up waits (as a quiet watch does) until cancelled."""

    lists: list[tuple[str, list[Any]] | BaseException]
    watches: list[list[Step]] = field(default_factory=list)
    list_calls: list[dict[str, Any]] = field(default_factory=list)
    watch_calls: list[dict[str, Any]] = field(default_factory=list)
    idle: bool = False  # a watch has used up its script

    def list(self, resource: Any, **kwargs: Any) -> Listing:
        self.list_calls.append({"resource": resource, **kwargs})
        step = self.lists.pop(0)
        if isinstance(step, BaseException):
            raise step
        return Listing(*step)

    async def watch(self, resource: Any, **kwargs: Any) -> AsyncIterator[tuple[str, Any]]:
        self.watch_calls.append({"resource": resource, **kwargs})
        self.idle = False
        script = self.watches.pop(0) if self.watches else []
        for step in script:
            if isinstance(step, BaseException):
                raise step
            yield step
        self.idle = True
        await asyncio.Event().wait()
        yield ("NEVER", None)  # pragma: no cover  # makes this an async generator with a wait at its end


class Changes:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None, str | None]] = []

    def __call__(self, key: str, old: str | None, new: str | None) -> None:
        self.seen.append((key, old, new))

    def take(self) -> list[tuple[str, str | None, str | None]]:
        out, self.seen = self.seen, []
        return out


def make(server: Any = None, **kwargs: Any) -> tuple[Informer[str], Changes]:
    changes = Changes()
    inf: Informer[str] = Informer(server, ConfigMap, value_of, changes, **kwargs)
    return inf, changes


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the informer's backoff sleeps instead of waiting them out; jitter factor 1 (random() = 1)."""
    delays: list[float] = []

    async def no_wait(delay: float, result: Any = None) -> Any:
        delays.append(delay)
        await REAL_SLEEP(0)
        return result

    monkeypatch.setattr(asyncio, "sleep", no_wait)
    monkeypatch.setattr(random, "random", lambda: 1.0)
    return delays


async def until(done: Callable[[], bool], rounds: int = 500) -> None:
    for _ in range(rounds):
        if done():
            return
        await REAL_SLEEP(0)
    raise AssertionError("the informer did not get there")


def drive(inf: Informer[Any], server: ScriptedServer, done: Callable[[], bool]) -> None:
    """Run the informer until ``done()`` and its watch is idle, then stop it."""

    async def main() -> None:
        task = asyncio.create_task(inf.run())
        try:
            await until(lambda: task.done() or (server.idle and done()))
            if task.done():
                task.result()  # raise what ended it
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def plain(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = obj.to_dict()
    return out


# -- applying one watch event --------------------------------------------------------------------


def test_added_modified_deleted_are_reported_with_old_and_new() -> None:
    inf, changes = make()
    inf._apply("ADDED", plain(cm("a", "1")))
    inf._apply("MODIFIED", plain(cm("a", "2")))
    inf._apply("DELETED", plain(cm("a", "2")))
    assert changes.take() == [("apps/a", None, "1"), ("apps/a", "1", "2"), ("apps/a", "2", None)]
    assert inf.items == {}


def test_an_update_that_changes_nothing_we_keep_is_not_reported() -> None:
    inf, changes = make()
    inf._apply("ADDED", plain(cm("a", "1", version="5")))
    inf._apply("MODIFIED", plain(cm("a", "1", version="6")))  # e.g. a label we do not keep changed
    assert changes.take() == [("apps/a", None, "1")]
    assert inf.items == {"apps/a": "1"}


def test_an_object_that_stops_converting_is_removed() -> None:
    inf, changes = make()
    inf._apply("ADDED", plain(cm("a", "1")))
    inf._apply("MODIFIED", plain(cm("a", None)))  # no longer ours (convert gives None)
    assert changes.take() == [("apps/a", None, "1"), ("apps/a", "1", None)]
    assert inf.items == {}


def test_objects_we_do_not_keep_are_never_reported() -> None:
    inf, changes = make()
    inf._apply("ADDED", plain(cm("x", None)))
    inf._apply("MODIFIED", plain(cm("x", None)))
    inf._apply("DELETED", plain(cm("x", None)))
    inf._apply("DELETED", plain(cm("never-seen", "1")))
    assert changes.take() == [] and inf.items == {}


def test_a_delete_reports_what_was_kept_not_the_final_object() -> None:
    inf, changes = make()
    inf._apply("ADDED", plain(cm("a", "kept")))
    changes.take()
    inf._apply("DELETED", plain(cm("a", "final-state-differs")))
    assert changes.take() == [("apps/a", "kept", None)]


def test_keys_are_namespace_slash_name_and_name_for_cluster_scoped() -> None:
    seen: list[str] = []
    nodes: Informer[str] = Informer(None, Node, lambda p: p["metadata"]["name"], lambda k, o, n: seen.append(k))  # type: ignore[arg-type]
    nodes._apply("ADDED", {"metadata": {"name": "n1"}})
    inf, _ = make()
    inf._apply("ADDED", plain(cm("a", "1", namespace="x")))
    inf._apply("ADDED", plain(cm("a", "1", namespace="y")))
    assert seen == ["n1"] and set(inf.items) == {"x/a", "y/a"}
    assert nodes.name == "Node"  # the log name defaults to the kind


# -- list, then watch from the list's version ----------------------------------------------------


def test_the_first_list_fills_the_cache_then_the_watch_starts_at_its_version(sleeps: list[float]) -> None:
    server = ScriptedServer(lists=[("100", [cm("a", "1"), cm("b", "2"), cm("skip", None)])])
    inf, changes = make(server, namespace="apps", page_size=50)
    drive(inf, server, lambda: bool(server.watch_calls))
    assert inf.synced.is_set() and inf.relists == 1
    assert inf.items == {"apps/a": "1", "apps/b": "2"}
    assert sorted(changes.take()) == [("apps/a", None, "1"), ("apps/b", None, "2")]
    assert server.list_calls == [{"resource": ConfigMap, "namespace": "apps", "chunk_size": 50}]
    assert server.watch_calls == [{"resource": ConfigMap, "namespace": "apps", "resource_version": "100"}]
    assert sleeps == []


@pytest.mark.parametrize(("namespace", "sent"), [("*", "*"), (None, None), ("metallb-system", "metallb-system")])
def test_the_namespace_is_passed_through(sleeps: list[float], namespace: str | None, sent: str | None) -> None:
    server = ScriptedServer(lists=[("1", [])])
    inf, _ = make(server, namespace=namespace)
    drive(inf, server, lambda: bool(server.watch_calls))
    assert server.list_calls[0]["namespace"] == sent and server.watch_calls[0]["namespace"] == sent


def test_synced_waits_for_a_list_that_succeeds(sleeps: list[float]) -> None:
    server = ScriptedServer(lists=[httpx.ConnectError("refused"), ("7", [cm("a", "1")])])
    inf, _ = make(server)
    synced_when_retrying: list[bool] = []

    async def main() -> None:
        task = asyncio.create_task(inf.run())
        await until(lambda: bool(sleeps))
        synced_when_retrying.append(inf.synced.is_set())
        await until(lambda: server.idle)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert synced_when_retrying == [False]
    assert inf.synced.is_set() and inf.items == {"apps/a": "1"} and inf.relists == 1
    assert sleeps == [0.2]
    assert server.watch_calls[0]["resource_version"] == "7"


def test_watch_events_are_applied_and_the_version_follows_them(sleeps: list[float]) -> None:
    server = ScriptedServer(
        lists=[("10", [cm("a", "1", "9")])],
        watches=[
            [
                ("ADDED", cm("b", "1", "11")),
                ("MODIFIED", cm("a", "2", "12")),
                ("BOOKMARK", cm("", None, "15")),  # moves the version, changes nothing
                httpx.RemoteProtocolError("peer closed connection"),
            ],
        ],
    )
    inf, changes = make(server)
    drive(inf, server, lambda: len(server.watch_calls) == 2)
    assert changes.take() == [("apps/a", None, "1"), ("apps/b", None, "1"), ("apps/a", "1", "2")]
    assert inf.items == {"apps/a": "2", "apps/b": "1"}
    # the dropped connection resumes from the last version seen, without a relist
    assert [c["resource_version"] for c in server.watch_calls] == ["10", "15"]
    assert inf.relists == 1 and len(server.list_calls) == 1


# -- 410 Gone: relist and report what changed meanwhile ------------------------------------------


@pytest.mark.parametrize("via", ["api", "httpx"])
def test_gone_relists_and_reports_only_the_differences(sleeps: list[float], via: str) -> None:
    server = ScriptedServer(
        lists=[
            ("10", [cm("same", "1"), cm("changed", "1"), cm("deleted", "1")]),
            ("50", [cm("same", "1", "40"), cm("changed", "2", "41"), cm("added", "1", "42"), cm("now-skipped", None)]),
        ],
        watches=[[gone(via)]],
    )
    inf, changes = make(server)
    drive(inf, server, lambda: inf.relists == 2)
    first = changes.seen[:3]
    assert sorted(first) == [("apps/changed", None, "1"), ("apps/deleted", None, "1"), ("apps/same", None, "1")]
    assert sorted(changes.seen[3:]) == [
        ("apps/added", None, "1"),
        ("apps/changed", "1", "2"),
        ("apps/deleted", "1", None),
    ]
    assert inf.items == {"apps/same": "1", "apps/changed": "2", "apps/added": "1"}
    assert [c["resource_version"] for c in server.watch_calls] == ["10", "50"]
    assert sleeps == []  # a relist is not a failure: no backoff


def test_gone_resets_the_version_even_after_events(sleeps: list[float]) -> None:
    server = ScriptedServer(
        lists=[("10", []), ("90", [])],
        watches=[[("ADDED", cm("a", "1", "11")), gone()]],
    )
    inf, changes = make(server)
    drive(inf, server, lambda: len(server.watch_calls) == 2)
    assert [c["resource_version"] for c in server.watch_calls] == ["10", "90"]
    assert changes.take() == [("apps/a", None, "1"), ("apps/a", "1", None)]  # gone from the fresh list


# -- failures: capped exponential backoff, reset by the next event --------------------------------


def test_backoff_doubles_from_0_2_s_up_to_5_s(sleeps: list[float]) -> None:
    errors: list[list[Step]] = [[httpx.ConnectError("refused")] for _ in range(8)]
    server = ScriptedServer(lists=[("10", [])], watches=errors)
    inf, _ = make(server)
    drive(inf, server, lambda: len(server.watch_calls) == 9)
    assert sleeps == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    assert {c["resource_version"] for c in server.watch_calls} == {"10"}  # never relisted for a transport error
    assert inf.relists == 1


def test_the_jitter_shortens_a_delay_to_at_most_half(sleeps: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "random", lambda: 0.0)
    server = ScriptedServer(lists=[("10", [])], watches=[[httpx.ConnectError("x")], [httpx.ConnectError("x")]])
    inf, _ = make(server)
    drive(inf, server, lambda: len(server.watch_calls) == 3)
    assert sleeps == [0.1, 0.2]


def test_an_event_after_failures_resets_the_backoff_and_logs_the_recovery(
    sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    server = ScriptedServer(
        lists=[("10", [])],
        watches=[
            [httpx.ConnectError("refused")],
            [httpx.ConnectError("refused")],
            [("ADDED", cm("a", "1", "11")), httpx.ReadError("reset")],
        ],
    )
    inf, _ = make(server, name="configmaps")
    with caplog.at_level(logging.INFO, logger="onprem_lb.k8s"):
        drive(inf, server, lambda: len(server.watch_calls) == 4)
    assert sleeps == [0.2, 0.4, 0.2]  # the third failure counts from one again
    logged = [r.getMessage() for r in caplog.records if r.name == "onprem_lb.k8s"]
    assert logged[0].startswith("watch of configmaps: cannot reach the API server (refused)")
    assert "watch of configmaps: works again after 2 failure(s)" in logged


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (refused(429), "watch of configmaps: HTTP 429: Too Many Requests; retrying"),
        (ApiError(status={"code": 403, "message": "configmaps is forbidden"}), "forbidden (HTTP 403): configmaps is"),
        (ApiError(status={"code": 500, "message": "etcd timeout"}), "watch of configmaps: HTTP 500: etcd timeout"),
    ],
)
def test_api_refusals_back_off_and_say_why(
    sleeps: list[float], caplog: pytest.LogCaptureFixture, error: BaseException, text: str
) -> None:
    server = ScriptedServer(lists=[("10", [])], watches=[[error]])
    inf, _ = make(server, name="configmaps")
    with caplog.at_level(logging.WARNING, logger="onprem_lb.k8s"):
        drive(inf, server, lambda: len(server.watch_calls) == 2)
    assert sleeps == [0.2]
    assert [c["resource_version"] for c in server.watch_calls] == ["10", "10"]
    (message,) = [r.getMessage() for r in caplog.records if r.name == "onprem_lb.k8s"]
    assert text in message and "Status(" not in message


def test_an_error_that_is_not_the_apis_or_the_networks_ends_run(sleeps: list[float]) -> None:
    server = ScriptedServer(lists=[("10", [])], watches=[[ValueError("a bug in convert")]])
    inf, _ = make(server)
    with pytest.raises(ValueError, match="a bug in convert"):
        drive(inf, server, lambda: False)
