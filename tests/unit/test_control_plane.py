"""The control-plane address: its settings file (every key, the bad ones generated), the rule
that picks the holder (properties over generated views), and the readiness debounce."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from onprem_lb.control_plane import owner
from onprem_lb.control_plane.health import Readiness
from onprem_lb.control_plane.settings import Health, SettingsError, parse
from onprem_lb.speaker.layer2.election import order_key
from tests.unit.test_bad_input_access import run_main

NODES = ("cp1", "cp2", "cp3")
KEY = "192.0.2.250"


def good(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    doc: dict[str, Any] = {
        "node": "cp1",
        "addresses": [KEY, "2001:db8::250"],
        "interfaces": ["eth0"],
        "members": [{"name": n, "heartbeat": f"198.51.100.{i + 11}:7947"} for i, n in enumerate(NODES)],
        "secretFile": str(secret),
    }
    doc.update(changes)
    return doc


def test_a_full_file_reads_with_its_defaults(tmp_path: Path) -> None:
    s = parse(yaml.safe_dump(good(tmp_path)))
    assert s.node == "cp1" and s.addresses == (KEY, "2001:db8::250") and s.interfaces == ("eth0",)
    assert [m.name for m in s.members] == list(NODES) and s.me.heartbeat == ("198.51.100.11", 7947)
    assert s.secret == b"s3cret" and s.health == Health() and (s.heartbeat_interval, s.dead_after) == (0.1, 0.4)


def test_one_member_needs_no_secret_and_the_node_flag_wins(tmp_path: Path) -> None:
    doc = good(tmp_path, members=[{"name": "solo", "heartbeat": "[2001:db8::1]:7947"}])
    del doc["secretFile"]
    s = parse(yaml.safe_dump(doc), node="solo")
    assert s.node == "solo" and s.secret is None and s.me.heartbeat == ("2001:db8::1", 7947)


BAD: list[tuple[dict[str, Any], str]] = [
    ({"adresses": [KEY]}, "unknown key(s) adresses"),
    ({"addresses": []}, "addresses: list one or two addresses"),
    ({"addresses": "192.0.2.250"}, "addresses: list one or two addresses"),
    ({"addresses": [KEY, "192.0.2.251"]}, "at most one IPv4 and one IPv6"),
    ({"addresses": ["127.0.0.1"]}, "addresses[0]: 127.0.0.1 cannot be a shared address"),
    ({"addresses": ["fe80::1"]}, "cannot be a shared address"),
    ({"addresses": ["192.0.2.0/24"]}, "addresses[0]: '192.0.2.0/24' is not an IP address"),
    ({"node": "cp9"}, "node: cp9 is not one of the members (cp1, cp2, cp3)"),
    ({"node": "CP_1"}, "node: 'CP_1' is not a DNS-1123 subdomain"),
    ({"members": []}, "members: list every control-plane node"),
    ({"members": [{"name": "cp1", "heartbeat": "198.51.100.11"}]}, "members[0].heartbeat: '198.51.100.11' is not"),
    ({"members": [{"name": "cp1", "heartbeat": "198.51.100.11:7947", "port": 1}]}, "members[0]: unknown key(s) port"),
    (
        {"members": [{"name": "cp1", "heartbeat": "198.51.100.11:1"}, {"name": "cp1", "heartbeat": "198.51.100.12:1"}]},
        "members[1]: cp1 is listed twice",
    ),
    (
        {"members": [{"name": "cp1", "heartbeat": "198.51.100.11:1"}, {"name": "cp2", "heartbeat": "198.51.100.11:1"}]},
        "members[1]: 198.51.100.11:1 is another member's heartbeat address",
    ),
    ({"interfaces": "eth0"}, "interfaces: must be a list"),
    ({"interfaces": ["a-name-longer-than-15"]}, "is not a Linux interface name"),
    ({"health": {"url": "ftp://127.0.0.1/readyz"}}, "health.url: 'ftp://127.0.0.1/readyz' must be an http(s) URL"),
    ({"health": {"interval": 0}}, "health.interval: 0 is not a number of seconds from 0.05 to 60"),
    ({"health": {"rise": 1.5}}, "health.rise: 1.5 is not a whole number from 1 to 20"),
    ({"health": {"fall": True}}, "health.fall: True is not a whole number"),
    ({"health": {"caFile": "/nonexistent/ca.crt"}}, "health.caFile: '/nonexistent/ca.crt': no such file"),
    ({"heartbeat": {"interval": 0.5, "deadAfter": 0.4}}, "interval (0.5 s) must be shorter than deadAfter (0.4 s)"),
    ({"heartbeat": {"deadAfter": float("nan")}}, "heartbeat.deadAfter: nan is not a number of seconds"),
    ({"garp": {"count": 0}}, "garp.count: 0 is not a whole number from 1 to 20"),
    ({"secretFile": None}, "secretFile: required with more than one member"),
    ({"secretFile": "/nonexistent/secret"}, "secretFile '/nonexistent/secret': no such file"),
    ({"insecureHeartbeats": "yes"}, "insecureHeartbeats: 'yes' must be true or false"),
]


@pytest.mark.parametrize(("changes", "expected"), BAD)
def test_each_bad_key_is_named_with_what_to_change(tmp_path: Path, changes: dict[str, Any], expected: str) -> None:
    doc = good(tmp_path)
    doc.update(changes)
    doc = {k: v for k, v in doc.items() if v is not None}
    with pytest.raises(SettingsError) as caught:
        parse(yaml.safe_dump(doc), source="cp.yaml")
    text = str(caught.value)
    assert text.startswith("cp.yaml: ") and expected in text and "\n" not in text, text


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("control-plane")


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300)
@given(key=st.sampled_from(["node", "addresses", "interfaces", "members", "health", "heartbeat", "garp",
                            "secretFile", "insecureHeartbeats", "extra"]), value=yaml_values)  # fmt: skip
@example(key="addresses", value=["0.0.0.0"])  # noqa: S104  # refused: no host can share it
@example(key="health", value={"url": "https:///readyz"})
def test_no_value_anywhere_gives_anything_but_a_settings_error(key: str, value: object, root: Path) -> None:
    doc = good(root)
    doc[key] = value
    try:
        parse(yaml.safe_dump(doc), source="cp.yaml")
    except SettingsError as exc:
        assert str(exc).startswith("cp.yaml: ") and "\n" not in str(exc)


@settings(max_examples=100)
@given(text=st.text(max_size=40))
@example(text="- [")
@example(text="\x00")
def test_text_that_is_no_settings_mapping_is_refused(text: str) -> None:
    with pytest.raises(SettingsError):
        parse(text, source="cp.yaml")


def test_the_command_checks_a_file_and_refuses_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "cp.yaml"
    path.write_text(yaml.safe_dump(good(tmp_path)))
    assert run_main(["control-plane", "--check", "--config", str(path)])[0] == 0
    path.write_text(yaml.safe_dump(good(tmp_path, node="cp9")))
    code, err = run_main(["control-plane", "--check", "--config", str(path)])
    assert code == 2 and err.strip() == f"onprem-lb control-plane: {path}: node: cp9 is not one of the members " \
        "(cp1, cp2, cp3); add it, or set node to its name", err  # fmt: skip
    code, err = run_main(["control-plane", "--check", "--config", str(tmp_path / "missing.yaml")])
    assert code == 2 and "--config" in err and "no such file" in err and "Traceback" not in err, err


# -- the rule ------------------------------------------------------------------------------------


def choose(me: str, *, ready: set[str], heard: set[str], claiming: set[str], settled: bool = True) -> owner.Choice:
    """``me``'s view when it hears ``heard`` (within the window) of which ``ready`` are ready."""
    return owner.choose(
        me,
        NODES,
        KEY,
        ready=me in ready,
        holding=me in claiming,
        settled=settled,
        heard=heard - {me},
        heard_ready=(heard & ready) - {me},
        claiming=claiming - {me},
    )


def first(nodes: set[str]) -> str:
    return min(nodes, key=lambda n: order_key(n, KEY))


subsets = st.sets(st.sampled_from(NODES))


@settings(max_examples=500)
@given(ready=subsets, claiming=subsets, up=subsets)
def test_members_that_hear_each_other_agree_on_one_holder(ready: set[str], claiming: set[str], up: set[str]) -> None:
    """Every member of a connected group computes the same holder: a ready claimer if there is
    one (the first of them), else the first ready member; nobody outside a majority."""
    claiming &= ready & up
    views = {me: choose(me, ready=ready, heard=up, claiming=claiming) for me in up}
    holders = {v.holder for v in views.values()}
    assert len(holders) <= 1
    if len(up) * 2 <= len(NODES):  # at most half, without the first by name
        if "cp1" not in up or len(up) * 2 < len(NODES):
            assert holders <= {None}
    elif up & ready:
        assert holders == {first(claiming or (up & ready))}
    takers = [me for me, v in views.items() if v.holder == me]
    assert len(takers) <= 1


def test_a_returning_member_does_not_take_the_address_from_a_ready_holder() -> None:
    firsts = sorted(NODES, key=lambda n: order_key(n, KEY))
    back, holder = firsts[0], firsts[1]
    view = choose(back, ready=set(NODES), heard=set(NODES), claiming={holder})
    assert view.holder == holder and view.reason == owner.ELSEWHERE


def test_a_holder_whose_apiserver_is_not_ready_gives_way() -> None:
    holder = first(set(NODES))
    assert choose(holder, ready=set(NODES) - {holder}, heard=set(NODES), claiming={holder}).reason == owner.NOT_READY
    others = set(NODES) - {holder}
    # its beats say not ready: the others drop it (heard_ready) and the first of them takes it
    assert {choose(n, ready=others, heard=set(NODES), claiming=set()).holder for n in others} == {first(others)}


def test_nobody_holds_without_a_majority_or_before_settling_or_when_nothing_is_ready() -> None:
    assert choose("cp2", ready=set(NODES), heard={"cp2"}, claiming=set()).reason == owner.NO_QUORUM
    assert choose("cp2", ready=set(NODES), heard=set(NODES), claiming=set(), settled=False).reason == owner.SETTLING
    assert choose("cp2", ready=set(), heard=set(NODES), claiming=set()).reason == owner.NOBODY


def test_two_claimers_after_a_healed_split_resolve_to_one() -> None:
    for a, b in itertools.combinations(NODES, 2):
        views = {n: choose(n, ready=set(NODES), heard=set(NODES), claiming={a, b}) for n in NODES}
        assert {v.holder for v in views.values()} == {first({a, b})}


# -- readiness -----------------------------------------------------------------------------------


def test_readiness_flips_after_rise_successes_and_fall_failures() -> None:
    r = Readiness(Health(rise=2, fall=3))
    assert [r.record(ok, "") for ok in (True, False, True, True)] == [False, False, False, True]
    assert r.ready
    assert [r.record(ok, "") for ok in (False, False, True, False, False, False)] == [False] * 5 + [True]
    assert not r.ready
