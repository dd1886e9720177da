"""`onprem-lb control-plane`: the command line of the control-plane address's daemon."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from onprem_lb import __version__, tasks
from onprem_lb.control_plane import settings as cp_settings
from onprem_lb.control_plane.daemon import ControlPlaneAddress
from onprem_lb.control_plane.health import Readiness
from onprem_lb.option_types import file_path, node_name
from onprem_lb.speaker.layer2 import announcer as l2
from onprem_lb.speaker.layer2.members import Members

DEFAULT_CONFIG = "/etc/onprem-lb/control-plane.yaml"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]  # argparse's own, not public
    cp = sub.add_parser(
        "control-plane",
        help="hold the control-plane endpoint's address on one control-plane node at a time (no API needed)",
    )
    cp.add_argument("--config", type=file_path, default=DEFAULT_CONFIG, help=f"settings (default {DEFAULT_CONFIG})")
    cp.add_argument("--node-name", type=node_name, help="this node's name among the members (default: the file's)")
    cp.add_argument(
        "--state-file",
        type=file_path,
        default="",
        help="write what this node holds and why here (JSON), e.g. /run/onprem-lb-control-plane/state.json",
    )
    cp.add_argument("--check", action="store_true", help="check the settings file, print a summary, start nothing")
    cp.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def load(args: argparse.Namespace) -> cp_settings.Settings | None:
    try:
        return cp_settings.load(args.config, node=args.node_name)
    except cp_settings.SettingsError as exc:
        print(f"onprem-lb control-plane: {exc}", file=sys.stderr)
        return None


def check(args: argparse.Namespace) -> int:
    loaded = load(args)
    if loaded is None:
        return 2
    members = ", ".join(m.name for m in loaded.members)
    print(f"{args.config}: {', '.join(loaded.addresses)} held by one of {members}; this node: {loaded.node}")
    return 0


async def run(args: argparse.Namespace) -> int:
    log = logging.getLogger("onprem_lb")
    loaded = load(args)
    if loaded is None:
        return 2
    members = Members(
        loaded.node,
        interval=loaded.heartbeat_interval,
        dead_after=loaded.dead_after,
        max_skew=loaded.max_skew,
        secret=loaded.secret,
    )
    announcer = l2.Announcer(garp_count=loaded.garp_count, garp_interval=loaded.garp_interval)
    announcer.refresh_links()
    missing = sorted(set(loaded.interfaces) - set(announcer.links))
    if missing:
        print(
            f"onprem-lb control-plane: {args.config}: interfaces: no interface {', '.join(missing)} here",
            file=sys.stderr,
        )
        return 2
    state = Path(args.state_file) if args.state_file else None
    daemon = ControlPlaneAddress(loaded, members, announcer, Readiness(loaded.health), state)
    sys.setswitchinterval(0.0005)  # the ARP/NDP reader threads answer within 0.5 ms (as the speaker's)
    stop = tasks.stop_on_signals()
    log.info(
        "onprem-lb control-plane %s starting: node %s, address %s, members %s, health %s",
        __version__,
        loaded.node,
        ", ".join(loaded.addresses),
        ", ".join(m.name for m in loaded.members),
        loaded.health.url,
    )
    try:
        await daemon.run(stop)
    except OSError as exc:
        print(f"onprem-lb control-plane: {exc}", file=sys.stderr)
        return 2
    log.info("stopped")
    return 0
