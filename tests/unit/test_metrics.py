"""metrics.py: the metrics README.md documents exist, in the registry of the process that exports
them (the controller's onprem_lb_controller_*, the speaker's onprem_lb_speaker_*), with the
documented labels; serve() listens where told, not at all without an address, and turns a
port it cannot take into one line naming --metrics-address.

Servers started here listen on 127.0.0.1 port 0 only and are shut down by the test. No
integration or e2e test scrapes a running daemon: tests/support/controlplane.py,
tests/support/l2lab.py and tests/e2e/test_kube_ipvs0.py start them with --metrics-address ''
(off), and tests/e2e/test_engine_file.py only finds the option in --help.
"""

from __future__ import annotations

import re
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.metrics import MetricWrapperBase

from onprem_lb import metrics
from onprem_lb.speaker.layer2 import election, handover, quorum

# README.md and the guides under docs/guides/, where the metrics are documented
DOCS = [
    Path(__file__).resolve().parents[2] / "README.md",
    *sorted((Path(__file__).resolve().parents[2] / "docs" / "guides").glob("*.md")),
]
README = "\n\n".join(path.read_text() for path in DOCS)


def exported(registry: CollectorRegistry) -> dict[str, str]:
    """Metric -> type, as a scrape of ``registry`` says (# TYPE lines); counters by their full
    name (older prometheus_client versions write a counter's TYPE line without _total)."""
    text = generate_latest(registry).decode()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    return {(f"{n}_total" if t == "counter" and not n.endswith("_total") else n): t for n, t in types.items()}


# What README.md says each process exports (in words), as (metric, type, label names).
CONTROLLER_DOCUMENTED = [
    ("onprem_lb_controller_pool_addresses_total", "gauge", ("pool", "family")),  # pool size
    ("onprem_lb_controller_pool_addresses_in_use", "gauge", ("pool", "family")),  # and use
    ("onprem_lb_controller_allocation_errors_total", "counter", ("reason",)),  # allocation errors by reason
    ("onprem_lb_controller_reconcile_seconds", "histogram", ()),  # reconcile latency
    ("onprem_lb_controller_leader", "gauge", ()),  # leadership
]
SPEAKER_DOCUMENTED = [
    ("onprem_lb_speaker_l2_requests_total", "counter", ("protocol",)),  # requests
    ("onprem_lb_speaker_l2_replies_total", "counter", ("protocol",)),  # replies
    ("onprem_lb_speaker_l2_gratuitous_total", "counter", ("protocol",)),  # gratuitous rounds
    ("onprem_lb_speaker_l2_foreign_claims_total", "counter", ("protocol",)),  # foreign claims defended
    ("onprem_lb_speaker_owned_addresses", "gauge", ()),  # owned addresses
    ("onprem_lb_speaker_owner_changes_total", "counter", ("change",)),  # owner changes
    ("onprem_lb_speaker_reannounce_seconds", "histogram", ()),  # time to re-announce
    ("onprem_lb_speaker_live_speakers", "gauge", ()),  # live ...
    ("onprem_lb_speaker_watched_speakers", "gauge", ()),  # ... and watched speakers
    ("onprem_lb_speaker_fenced", "gauge", ()),  # whether the speaker is fenced
    ("onprem_lb_speaker_addresses", "gauge", ("state",)),  # onprem_lb_speaker_addresses{state}
]


def collector(name: str) -> MetricWrapperBase:
    """The module-level metric object whose full name is ``name``."""
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase) and next(iter(value.describe())).name in (
            name,
            name.removesuffix("_total"),
        ):
            return value
    raise AssertionError(f"metrics.py defines no {name}")


def test_the_readme_names_each_prefix_and_the_state_metric() -> None:
    for text in ("onprem_lb_controller_*", "onprem_lb_speaker_*", "onprem_lb_speaker_addresses{state}"):
        assert f"`{text}`" in README


@pytest.mark.parametrize(
    ("registry", "other", "documented"),
    [
        (metrics.REGISTRY, metrics.SPEAKER, CONTROLLER_DOCUMENTED),
        (metrics.SPEAKER, metrics.REGISTRY, SPEAKER_DOCUMENTED),
    ],
    ids=["controller", "speaker"],
)
def test_documented_metrics_are_in_their_process_registry_only(
    registry: CollectorRegistry, other: CollectorRegistry, documented: list[tuple[str, str, tuple[str, ...]]]
) -> None:
    mine, theirs = exported(registry), exported(other)
    for name, type_, _labels in documented:
        assert mine.get(name) == type_, name
        assert name not in theirs, f"{name} would be exported by the other process too"


@pytest.mark.parametrize(
    ("name", "labels"),
    [(name, labels) for name, _t, labels in CONTROLLER_DOCUMENTED + SPEAKER_DOCUMENTED if labels],
)
def test_documented_labels(name: str, labels: tuple[str, ...]) -> None:
    metric = collector(name)
    child_values = dict.fromkeys(labels, "unit-test")
    metric.labels(**child_values)  # raises ValueError on any other set of label names
    metric.remove(*child_values.values())
    with pytest.raises(ValueError, match="label"):
        metric.labels(**{**child_values, "extra": "x"})


def test_each_registry_holds_only_its_own_prefix() -> None:
    controller, speaker = exported(metrics.REGISTRY), exported(metrics.SPEAKER)
    assert controller and speaker
    assert all(n.startswith("onprem_lb_controller_") for n in controller), sorted(controller)
    assert all(n.startswith("onprem_lb_speaker_") for n in speaker), sorted(speaker)


def test_nothing_lands_in_prometheus_default_registry() -> None:
    assert not [n for n in exported(DEFAULT_REGISTRY) if n.startswith("onprem_lb_")]


def test_each_documented_address_state_is_one_the_speaker_reports() -> None:
    listed = README[README.index("`onprem_lb_speaker_addresses{state}`") :].split("\n\n", 1)[0]
    documented = set(re.findall(r"`([a-z][A-Za-z]+)`", listed))
    assert len(documented) >= 10, listed
    modules = (election, handover, quorum)
    known = {v for module in modules for k, v in vars(module).items() if k.isupper() and isinstance(v, str)}
    assert documented <= known, documented - known


# -- serve ---------------------------------------------------------------------------------------


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, ...]]]:
    """Record each server serve() starts (it does not return it) and shut them down afterwards."""
    servers: list[tuple[Any, ...]] = []

    def recording(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
        result = start_http_server(*args, **kwargs)
        servers.append(result)
        return result

    monkeypatch.setattr(metrics, "start_http_server", recording)
    yield servers
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


@pytest.mark.parametrize("address", [None, ()])
def test_serve_without_an_address_listens_nowhere(started: list[tuple[Any, ...]], address: Any) -> None:
    metrics.serve(address)
    assert started == []


def scrape(port: int) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy variable
    with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        body: bytes = response.read()
    return body.decode()


def test_serve_exports_only_the_given_registry(started: list[tuple[Any, ...]]) -> None:
    metrics.serve(("127.0.0.1", 0), metrics.SPEAKER)
    ((server, _thread),) = started
    host, port = server.server_address[:2]
    assert host == "127.0.0.1"
    body = scrape(port)
    assert "# TYPE onprem_lb_speaker_fenced gauge" in body
    assert "onprem_lb_controller_" not in body


def test_serve_defaults_to_the_controller_registry(started: list[tuple[Any, ...]]) -> None:
    metrics.serve(("127.0.0.1", 0))
    ((server, _thread),) = started
    body = scrape(server.server_address[1])
    assert "# TYPE onprem_lb_controller_leader gauge" in body
    assert "onprem_lb_speaker_" not in body


@pytest.mark.parametrize(
    ("family", "host", "written"),
    [(socket.AF_INET, "127.0.0.1", "127.0.0.1"), (socket.AF_INET6, "::1", "[::1]")],
)
def test_a_port_in_use_is_one_line_naming_the_option(
    started: list[tuple[Any, ...]], family: socket.AddressFamily, host: str, written: str
) -> None:
    with socket.socket(family, socket.SOCK_STREAM) as taken:
        taken.bind((host, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ValueError) as err:
            metrics.serve((host, port))
    assert str(err.value) == f"--metrics-address {written}:{port}: cannot listen there (Address already in use)"
    assert err.value.__suppress_context__  # raised from None: no traceback of the socket library
    assert started == []
