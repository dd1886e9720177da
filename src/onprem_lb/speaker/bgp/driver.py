"""FRR on this node, through FRR's own tools: ``frr-reload.py`` applies a configuration (it
diffs the running configuration against the file and sends only the changed lines, so bgpd is
never restarted), ``vtysh`` reads the sessions' state.

``pathspace`` is FRR's ``-N``: daemons started with it keep their sockets and configuration
under a name of their own (the lab runs one FRR per node namespace on one machine); empty on
a real node.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onprem_lb.speaker.bgp import incremental

log = logging.getLogger("onprem_lb.speaker.bgp")
RELOAD = "/usr/lib/frr/frr-reload.py"


class FrrError(RuntimeError):
    """FRR refused a configuration or did not answer; the message says what it said."""


@dataclass(frozen=True)
class Session:
    peer: str  # the neighbour as FRR names it (address or interface)
    vrf: str
    state: str  # Idle, Connect, Active, OpenSent, OpenConfirm, Established
    established_for_ms: int  # 0 unless Established
    last_reset: str  # FRR's words for the last reset, when it gives some


class Frr:
    def __init__(
        self,
        *,
        pathspace: str = "",
        confdir: Path = Path("/etc/frr"),
        reload_command: Sequence[str] = (RELOAD,),
        vtysh: str = "vtysh",
        timeout: float = 60.0,
    ) -> None:
        self.pathspace = pathspace
        self.confdir = confdir / pathspace if pathspace else confdir
        self.reload_command = tuple(reload_command)
        self.vtysh = vtysh
        self.timeout = timeout
        self.path = self.confdir / "onprem-lb.conf"

    async def _run(self, *argv: str, logs_in_output: bool = True) -> str:
        """The command's output (with its log lines, unless ``logs_in_output`` is false: then
        standard output only, its standard error kept for the message should it fail)."""
        stderr = asyncio.subprocess.STDOUT if logs_in_output else asyncio.subprocess.PIPE
        try:
            proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=stderr)
        except OSError as exc:
            hint = "is FRR installed? (Debian: frr, frr-pythontools)"
            raise FrrError(f"cannot run {argv[0]}: {exc.strerror}; {hint}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise FrrError(f"{argv[0]} did not finish within {self.timeout:g} s") from None
        text = out.decode(errors="replace")
        if proc.returncode != 0:
            said = text + (err or b"").decode(errors="replace")
            tail = " | ".join(line for line in said.strip().splitlines()[-5:])
            raise FrrError(f"{Path(argv[0]).name} exited {proc.returncode}: {tail or 'no output'}")
        return text

    def _pathspace(self) -> list[str]:
        return ["--pathspace", self.pathspace] if self.pathspace else []

    def write(self, text: str) -> Path:
        """The configuration file, readable by root only (it may hold BGP passwords)."""
        self.confdir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)
        return self.path

    async def apply(self, text: str, running: str | None = None) -> str:
        """Bring FRR to ``text``. With ``running`` (the text FRR took last), a change of routes
        only goes as vtysh commands (``incremental``); anything else, or commands FRR refuses,
        through frr-reload.py. Returns how: "incremental" or "reload"."""
        path = self.write(text)
        lines = incremental.commands(running, text) if running is not None else None
        if lines is not None:
            try:
                if lines:
                    await self._run(*incremental.vtysh_argv(self.vtysh, self.pathspace, lines))
                return "incremental"
            except FrrError as exc:
                log.warning("FRR refused the route change (%s); reloading the whole configuration", exc)
        await self._reload(path)
        return "reload"

    async def _reload(self, path: Path) -> None:
        """frr-reload.py until FRR holds the whole file, at most three times. Its exit status is
        not the judge: it sends its first pass's additions again in a second pass, and some
        commands fail when repeated ("neighbor X graceful-restart" in FRR 8.4: "not valid at
        this moment"); and its deletions can leave a line behind (removing a neighbour's BFD
        profile sends "no neighbor X bfd", then "no neighbor X bfd profile P", which turns BFD
        on again). What counts is what frr-reload.py --test finds still to change."""
        # its temporary files go beside ours: the speaker may write nowhere else (ProtectSystem=strict)
        rundir = ["--rundir", str(self.confdir)]
        error: FrrError | None = None
        left: list[str] = []
        for _ in range(3):
            try:
                await self._run(*self.reload_command, "--reload", "--stdout", *rundir, *self._pathspace(), str(path))
                error = None
            except FrrError as exc:
                error = exc
            try:
                left = await self.pending(path)
            except FrrError:
                if error is not None:
                    raise error from None  # the reload's own words, not --test's
                raise
            if not left:
                if error is not None:
                    log.info("frr-reload.py reported %s, but FRR holds the whole configuration", error)
                return
        if error is not None:
            raise error
        raise FrrError(f"frr-reload.py leaves FRR short of the configuration: {' | '.join(left[:8])}")

    async def pending(self, path: Path) -> list[str]:
        """What frr-reload.py would still change to bring FRR to ``path`` (its --test lines)."""
        out = await self._run(*self.reload_command, "--test", *self._pathspace(), str(path), logs_in_output=False)
        return pending_lines(out)

    async def restore(self, text: str) -> str:
        """Give a daemon that came back empty the whole text, as commands (``vtysh -f``): the
        other daemons still hold their part (route maps, prefix lists), so frr-reload.py, which
        diffs against them all, would send a restarted bgpd too little."""
        path = self.write(text)
        await self._run(self.vtysh, *(["-N", self.pathspace] if self.pathspace else []), "-f", str(path))
        return "restore"

    async def vtysh_json(self, command: str) -> Any:
        argv = [self.vtysh, *(["-N", self.pathspace] if self.pathspace else []), "-c", command]
        text = await self._run(*argv)
        try:
            return json.loads(text)
        except ValueError:
            raise FrrError(f"vtysh answered {command!r} with no JSON: {text[:200]!r}") from None

    async def sessions(self) -> list[Session]:
        return parse_sessions(await self.vtysh_json("show bgp vrf all neighbors json"))


def pending_lines(test_output: str) -> list[str]:
    """The lines under frr-reload.py --test's "Lines To Delete" and "Lines To Add" headings."""
    return [
        line
        for line in test_output.splitlines()
        if line.strip() and not set(line.strip()) <= {"="} and not line.startswith("Lines To ")
    ]


def parse_sessions(data: Any) -> list[Session]:
    """``show bgp vrf all neighbors json``: {vrf: {"vrfName": ..., neighbour: {...}}}."""
    out: list[Session] = []
    for vrf_key, vrf in (data or {}).items() if isinstance(data, dict) else []:
        if not isinstance(vrf, dict):
            continue
        vrf_name = str(vrf.get("vrfName") or vrf_key)
        for peer, info in vrf.items():
            if not isinstance(info, dict) or "bgpState" not in info:
                continue
            state = str(info.get("bgpState"))
            up = int(info.get("bgpTimerUpMsec") or 0) if state == "Established" else 0
            reset = str(info.get("lastResetDueTo") or "")
            out.append(Session(peer, "" if vrf_name == "default" else vrf_name, state, up, reset))
    return sorted(out, key=lambda s: (s.vrf, s.peer))
