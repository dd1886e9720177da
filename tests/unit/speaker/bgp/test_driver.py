"""speaker/bgp/driver.py: the file FRR reads, how a failing tool is reported, and the sessions
as `show bgp vrf all neighbors json` gives them. FRR itself answers in tests/e2e/test_bgp_speaker.py."""

from __future__ import annotations

import asyncio
import json
import stat
import sys
from pathlib import Path

import pytest

from onprem_lb.speaker.bgp.driver import Frr, FrrError, Session, parse_sessions, pending_lines


def test_the_configuration_file_is_for_root_only(tmp_path: Path) -> None:
    frr = Frr(pathspace="n1", confdir=tmp_path)
    path = frr.write("router bgp 64512\n neighbor 198.51.100.1 password s3cret\n")
    assert path == tmp_path / "n1" / "onprem-lb.conf"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "s3cret" in path.read_text()
    assert not list((tmp_path / "n1").glob("*.tmp"))


def test_apply_runs_the_reload_tool_with_the_file_and_pathspace(tmp_path: Path) -> None:
    argv_file = tmp_path / "argv"
    tool = [sys.executable, "-c", f"import sys; open({str(argv_file)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')"]
    frr = Frr(pathspace="n2", confdir=tmp_path, reload_command=tool)
    asyncio.run(frr.apply("frr defaults traditional\n"))
    rundir, conf = tmp_path / "n2", tmp_path / "n2" / "onprem-lb.conf"
    assert argv_file.read_text().splitlines() == [
        f"--reload --stdout --rundir {rundir} --pathspace n2 {conf}",
        f"--test --pathspace n2 {conf}",  # then asked what is left: nothing
    ]


# A stand-in for frr-reload.py: --reload exits with the next status of RELOADS (0 once they run
# out), --test prints the next of TESTS (nothing once they run out); every call is counted.
FAKE = """
import json, sys
state = json.load(open(sys.argv[1]))
mode = sys.argv[2]
state["calls"].append(mode)
queue = state["reloads" if mode == "--reload" else "tests"]
answer = queue.pop(0) if queue else None
json.dump(state, open(sys.argv[1], "w"))
if mode == "--reload":
    print("% The Graceful Restart command used is not valid at this moment." if answer else "done")
    raise SystemExit(answer or 0)
print(answer or "")
"""
LEFT = (
    "Lines To Delete\n===============\nrouter bgp 64512\n no neighbor 203.0.113.1 bfd\n\nLines To Add\n============\n"
)


def fake_frr(tmp_path: Path, reloads: list[int], tests: list[str]) -> tuple[Frr, Path]:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"calls": [], "reloads": reloads, "tests": tests}))
    return Frr(confdir=tmp_path, reload_command=[sys.executable, "-c", FAKE, str(state)]), state


@pytest.mark.parametrize(
    ("reloads", "tests", "calls"),
    [
        ([1], [], ["--reload", "--test"]),  # failed, yet nothing is left: taken
        ([0], [LEFT], ["--reload", "--test", "--reload", "--test"]),  # a line left behind: once more
        ([1, 0], [LEFT], ["--reload", "--test", "--reload", "--test"]),
    ],
)
def test_a_reload_is_judged_by_what_is_left_to_change(
    tmp_path: Path, reloads: list[int], tests: list[str], calls: list[str]
) -> None:
    frr, state = fake_frr(tmp_path, reloads, tests)
    assert asyncio.run(frr.apply("!\n")) == "reload"
    assert json.loads(state.read_text())["calls"] == calls


@pytest.mark.parametrize(
    ("reloads", "said"), [([1, 1, 1], "not valid at this moment"), ([], "short of the configuration")]
)
def test_a_reload_that_never_gets_there_is_an_error(tmp_path: Path, reloads: list[int], said: str) -> None:
    frr, state = fake_frr(tmp_path, reloads, [LEFT] * 3)
    with pytest.raises(FrrError, match=said):
        asyncio.run(frr.apply("!\n"))
    assert json.loads(state.read_text())["calls"] == ["--reload", "--test"] * 3  # three tries, no more


def test_pending_lines_are_the_lines_under_the_headings() -> None:
    assert pending_lines(LEFT) == ["router bgp 64512", " no neighbor 203.0.113.1 bfd"]
    assert pending_lines("\nLines To Delete\n===============\nLines To Add\n============\n") == []


@pytest.mark.parametrize(
    ("command", "said"),
    [
        ([sys.executable, "-c", "print('line 3: % Unknown command'); raise SystemExit(2)"],
         "exited 2: line 3: % Unknown command"),
        (["/nonexistent/frr-reload.py"], "is FRR installed?"),
        ([sys.executable, "-c", "import time; time.sleep(5)"], "did not finish within 0.3 s"),
    ],
)  # fmt: skip
def test_a_failing_tool_is_one_clear_error(tmp_path: Path, command: list[str], said: str) -> None:
    frr = Frr(confdir=tmp_path, reload_command=command, timeout=0.3)
    with pytest.raises(FrrError, match=said.replace("?", r"\?")):
        asyncio.run(frr.apply("!\n"))


def test_sessions_from_frr_json() -> None:
    data = {
        "default": {
            "vrfId": 0,
            "vrfName": "default",
            "203.0.113.1": {"bgpState": "Established", "bgpTimerUpMsec": 12345, "remoteAs": 64500},
            "2001:db8:b::1": {"bgpState": "Active", "lastResetDueTo": "Waiting for peer OPEN"},
        },
        "red": {"vrfId": 5, "vrfName": "red", "198.51.100.2": {"bgpState": "Connect"}},
        "junk": "not a vrf",
    }
    assert parse_sessions(data) == [
        Session("2001:db8:b::1", "", "Active", 0, "Waiting for peer OPEN"),
        Session("203.0.113.1", "", "Established", 12345, ""),
        Session("198.51.100.2", "red", "Connect", 0, ""),
    ]
    assert parse_sessions({}) == [] and parse_sessions(None) == [] and parse_sessions([1]) == []
