"""speaker/bgp/driver.py: the file FRR reads, how a failing tool is reported, and the sessions
as `show bgp vrf all neighbors json` gives them. FRR itself answers in tests/e2e/test_bgp_speaker.py."""

from __future__ import annotations

import asyncio
import stat
import sys
from pathlib import Path

import pytest

from onprem_lb.speaker.bgp.driver import Frr, FrrError, Session, parse_sessions


def test_the_configuration_file_is_for_root_only(tmp_path: Path) -> None:
    frr = Frr(pathspace="n1", confdir=tmp_path)
    path = frr.write("router bgp 64512\n neighbor 198.51.100.1 password s3cret\n")
    assert path == tmp_path / "n1" / "onprem-lb.conf"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "s3cret" in path.read_text()
    assert not list((tmp_path / "n1").glob("*.tmp"))


def test_apply_runs_the_reload_tool_with_the_file_and_pathspace(tmp_path: Path) -> None:
    argv_file = tmp_path / "argv"
    tool = [sys.executable, "-c", f"import sys; open({str(argv_file)!r}, 'w').write(' '.join(sys.argv[1:]))"]
    frr = Frr(pathspace="n2", confdir=tmp_path, reload_command=tool)
    asyncio.run(frr.apply("frr defaults traditional\n"))
    rundir = tmp_path / "n2"
    assert argv_file.read_text() == f"--reload --stdout --rundir {rundir} --pathspace n2 {rundir / 'onprem-lb.conf'}"


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
