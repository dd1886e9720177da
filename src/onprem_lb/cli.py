"""The `onprem-lb` command: controller, speaker, control-plane, status, convert-configmap, version."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

import yaml
from lightkube import ApiError

from onprem_lb import __version__, file_input, k8s, legacy, metrics, status_report, tasks
from onprem_lb.control_plane import command as control_plane
from onprem_lb.controller.loop import COMPONENT, run_controller
from onprem_lb.k8s.leader import LeaderElector
from onprem_lb.option_types import (
    dir_path,
    dns_label,
    dns_subdomain,
    file_path,
    host_port,
    node_name,
    printable,
    rounds,
    seconds,
    writes,
)
from onprem_lb.speaker import agent as speaker
from onprem_lb.speaker.bgp.driver import Frr
from onprem_lb.speaker.bgp.protocol import Bgp
from onprem_lb.speaker.layer2 import announcer as l2
from onprem_lb.speaker.layer2.members import Members
from onprem_lb.speaker.layer2.protocol import Layer2


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (structured logs for journald/Loki)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def _cluster_args(parser: argparse.ArgumentParser, *, namespace_help: str) -> None:
    parser.add_argument("--kubeconfig", type=file_path, help="kubeconfig file (default: $KUBECONFIG, else in-cluster)")
    parser.add_argument("--context", type=printable, help="kubeconfig context (default: the current one)")
    parser.add_argument("--namespace", type=dns_label, default="metallb-system", help=namespace_help)


def _daemon_args(parser: argparse.ArgumentParser, *, metrics_port: int) -> None:
    parser.add_argument(
        "--metrics-address",
        type=host_port,
        default=f"127.0.0.1:{metrics_port}",
        help="HOST:PORT for /metrics; empty: off",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onprem-lb", description="onprem.ingress load-balancer engine")
    parser.add_argument("--version", action="version", version=f"onprem-lb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    ctl = sub.add_parser("controller", help="allocate addresses to LoadBalancer Services (leader-elected)")
    _cluster_args(ctl, namespace_help="namespace of the metallb.io objects and the Lease")
    ctl.add_argument(
        "--lb-class",
        type=printable,
        default="",
        help="spec.loadBalancerClass to serve (default: Services without a class, like MetalLB)",
    )
    ctl.add_argument("--identity", type=printable, default="", help="leader-election identity (default: hostname_pid)")
    ctl.add_argument("--lease-name", type=dns_subdomain, default="onprem-lb-controller")
    ctl.add_argument("--lease-duration", type=seconds, default=15.0, help="seconds (default 15)")
    ctl.add_argument("--renew-deadline", type=seconds, default=10.0, help="seconds (default 10)")
    ctl.add_argument("--retry-period", type=seconds, default=2.0, help="seconds (default 2)")
    ctl.add_argument(
        "--max-writes",
        type=writes,
        default=8,
        help="Service writes in flight at once, 1 to 64 (default 8): decisions stay in order, writes overlap",
    )
    _daemon_args(ctl, metrics_port=7472)

    spk = sub.add_parser("speaker", help="announce this node's addresses: ARP and NDP, and BGP through FRR with --bgp")
    _cluster_args(spk, namespace_help="namespace of the metallb.io objects and Leases")
    spk.add_argument(
        "--node-name", type=node_name, default=os.environ.get("NODE_NAME", ""), help="this node (default: $NODE_NAME)"
    )
    spk.add_argument(
        "--heartbeat-address",
        type=host_port,
        default=os.environ.get("ONPREM_LB_HEARTBEAT_ADDRESS", ""),
        help="HOST:PORT this speaker receives heartbeats on, reachable from the other nodes (e.g. NODE_IP:7946)",
    )
    spk.add_argument("--heartbeat-interval", type=seconds, default=0.1, help="seconds between heartbeats (default 0.1)")
    spk.add_argument("--dead-after", type=seconds, default=0.4, help="a silent peer is dead after (default 0.4 s)")
    spk.add_argument(
        "--secret-file",
        type=file_path,
        help="file with a shared secret, the same on every node: heartbeats are signed (HMAC-SHA256)",
    )
    spk.add_argument(
        "--insecure-heartbeats",
        action="store_true",
        help="run without --secret-file: any host that reaches the heartbeat port can pose as a speaker",
    )
    spk.add_argument(
        "--heartbeat-max-skew",
        type=seconds,
        default=10.0,
        help="drop heartbeats sent longer ago (or later) than this by this node's clock: replays (default 10 s)",
    )
    spk.add_argument(
        "--lb-class", type=printable, default="", help="spec.loadBalancerClass served (default: none, like MetalLB)"
    )
    spk.add_argument("--spread", action="store_true", help="balance addresses evenly across eligible nodes")
    spk.add_argument(
        "--bgp", action="store_true", help="announce over BGP too, through FRR on this node (BGPPeer objects)"
    )
    spk.add_argument(
        "--frr-pathspace", type=printable, default="", help="FRR's -N name when FRR runs with one (default: none)"
    )
    spk.add_argument(
        "--frr-confdir", type=dir_path, default="/etc/frr", help="FRR's configuration directory (default /etc/frr)"
    )
    spk.add_argument("--no-probe", action="store_true", help="skip the conflict probe before a first announcement")
    spk.add_argument("--lease-duration", type=seconds, default=10.0, help="seconds (default 10)")
    spk.add_argument(
        "--renew-deadline", type=seconds, default=6.0, help="go quiet after this long unrenewed (default 6)"
    )
    spk.add_argument("--renew-period", type=seconds, default=2.0, help="seconds between renewals (default 2)")
    spk.add_argument("--handover-timeout", type=seconds, default=2.0, help="longest planned handover (default 2 s)")
    spk.add_argument("--garp-count", type=rounds, default=3, help="gratuitous ARP/NA rounds on takeover (default 3)")
    spk.add_argument("--garp-interval", type=seconds, default=0.2, help="seconds between those rounds (default 0.2)")
    _daemon_args(spk, metrics_port=7473)

    control_plane.add_parser(sub)

    st = sub.add_parser(
        "status", help="every Service address: pool, who announces it, the state and reason on every node"
    )
    _cluster_args(st, namespace_help="namespace of the speakers' Leases and status objects (default metallb-system)")
    st.add_argument("--lb-class", type=printable, default="", help="spec.loadBalancerClass served (default: none)")
    st.add_argument("--output", choices=["text", "json"], default="text", help="text (default) or json")
    st.add_argument("--timeout", type=seconds, default=20.0, help="give up on the API after this long (default 20 s)")

    conv = sub.add_parser("convert-configmap", help="print metallb.io objects for a legacy MetalLB ConfigMap")
    conv.add_argument("file", type=file_path, help="the ConfigMap manifest (or its bare `config` value); - for stdin")
    conv.add_argument("--namespace", default="metallb-system", help="namespace of the objects written")

    sub.add_parser("version", help="print the version")
    return parser


def _convert(args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.file == "-" else str(file_input.read_file(args.file, "FILE"))
    except (file_input.InputFileError, UnicodeDecodeError) as exc:
        print(f"onprem-lb convert-configmap: {exc}", file=sys.stderr)
        return 2
    try:
        resources = legacy.convert(legacy.config_text_from_manifest(text), namespace=args.namespace)
    except legacy.ConversionError as exc:
        print(f"onprem-lb: {args.file}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(yaml.safe_dump_all(resources, sort_keys=False, explicit_start=True))
    return 0


async def _controller(args: argparse.Namespace) -> int:
    log = logging.getLogger("onprem_lb")
    try:
        config = k8s.load_config(args.kubeconfig, args.context)
        elector_args = {
            "lease_duration": args.lease_duration,
            "renew_deadline": args.renew_deadline,
            "retry_period": args.retry_period,
        }
        client = k8s.make_client(config, COMPONENT)
        identity = args.identity or f"{socket.gethostname()}_{os.getpid()}"
        elector = LeaderElector(client, args.namespace, args.lease_name, identity, **elector_args)
        metrics.serve(args.metrics_address)
    except k8s.KubeAccessError as exc:
        print(f"onprem-lb controller: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"onprem-lb controller: {exc}", file=sys.stderr)
        return 2
    stop = tasks.stop_on_signals()
    log.info(
        "onprem-lb controller %s starting: identity %s, namespace %s, class %s",
        __version__,
        identity,
        args.namespace,
        args.lb_class or "(none)",
    )
    try:
        await run_controller(
            client,
            elector,
            namespace=args.namespace,
            lb_class=args.lb_class or None,
            max_writes=args.max_writes,
            stop=stop,
        )
    finally:
        await k8s.close_client(client)
    log.info("stopped")
    return 0


async def _speaker(args: argparse.Namespace) -> int:
    log = logging.getLogger("onprem_lb")
    try:
        if not args.node_name:
            raise ValueError("no node name: pass --node-name or set NODE_NAME (the Node object's name)")
        if not args.heartbeat_address:
            raise ValueError("no heartbeat address: pass --heartbeat-address NODE_IP:7946")
        heartbeat = args.heartbeat_address
        if not args.secret_file and not args.insecure_heartbeats:
            raise ValueError(
                "heartbeats would be unsigned: pass --secret-file FILE (a shared secret, the same on every node), "
                "or --insecure-heartbeats to accept that"
            )
        secret = _read_secret(args.secret_file) if args.secret_file else None
        config = k8s.load_config(args.kubeconfig, args.context)
        client = k8s.make_client(config, speaker.COMPONENT)
        # labelled children looked up once: these run for every ARP request / solicitation
        requests = {p: metrics.l2_requests.labels(p) for p in ("arp", "ndp")}
        replies = {p: metrics.l2_replies.labels(p) for p in ("arp", "ndp")}
        members = Members(
            args.node_name,
            interval=args.heartbeat_interval,
            dead_after=args.dead_after,
            max_skew=args.heartbeat_max_skew,
            secret=secret,
        )
        announcer = l2.Announcer(
            garp_count=args.garp_count,
            garp_interval=args.garp_interval,
            on_request=lambda p: requests[p].inc(),
            on_reply=lambda p: replies[p].inc(),
            on_gratuitous=lambda p: metrics.l2_gratuitous.labels(p).inc(),
            on_foreign_claim=lambda p: metrics.l2_foreign_claims.labels(p).inc(),
        )
        announcer.refresh_links()
        spk = speaker.Speaker(
            client,
            node=args.node_name,
            namespace=args.namespace,
            lb_class=args.lb_class or None,
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            renew_period=args.renew_period,
            bgp=args.bgp,
        )
        layer2 = Layer2(
            client,
            node=args.node_name,
            namespace=args.namespace,
            heartbeat=heartbeat,
            members=members,
            announcer=announcer,
            events=spk.events,
            spread=args.spread,
            handover_timeout=args.handover_timeout,
            probe=not args.no_probe,
        )
        spk.add(layer2)
        spk.hold_by(layer2.hold)  # without the API, layer 2's heartbeats say who may keep announcing
        if args.bgp:
            driver = Frr(pathspace=args.frr_pathspace, confdir=Path(args.frr_confdir))
            spk.add(Bgp(client, node=args.node_name, namespace=args.namespace, frr_driver=driver, events=spk.events))
        metrics.serve(args.metrics_address, metrics.SPEAKER)
    except k8s.KubeAccessError as exc:
        print(f"onprem-lb speaker: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"onprem-lb speaker: {exc}", file=sys.stderr)
        return 2
    # Reader threads answer ARP/NDP; when the loop thread is busy they get the GIL within
    # 0.5 ms instead of Python's default 5 ms.
    sys.setswitchinterval(0.0005)
    stop = tasks.stop_on_signals()
    log.info(
        "onprem-lb speaker %s starting: node %s, heartbeats on %s, interfaces %s",
        __version__,
        args.node_name,
        f"{heartbeat[0]}:{heartbeat[1]}",
        ", ".join(sorted(announcer.links)) or "(none)",
    )
    try:
        await spk.run(stop)
    except OSError as exc:
        print(f"onprem-lb speaker: {exc}", file=sys.stderr)
        return 2
    finally:
        await k8s.close_client(client)
    log.info("stopped")
    return 0


def _read_secret(path: str) -> bytes:
    data = file_input.read_file(path, "--secret-file", binary=True, hint="point it at the shared secret's file")
    secret = data.strip() if isinstance(data, bytes) else b""
    if not secret:
        raise ValueError(f"secret file {path!r} is empty (--secret-file): write the shared secret into it")
    return secret


async def _status(args: argparse.Namespace) -> int:
    try:
        client = k8s.make_client(k8s.load_config(args.kubeconfig, args.context), "onprem-lb-status")
    except k8s.KubeAccessError as exc:
        print(f"onprem-lb status: {exc}", file=sys.stderr)
        return 2
    try:
        report = await asyncio.wait_for(status_report.collect(client, args.namespace, args.lb_class), args.timeout)
    except asyncio.TimeoutError:
        print(f"onprem-lb status: the API server did not answer within {args.timeout:g} s", file=sys.stderr)
        return 2
    except (ApiError, *k8s.TRANSIENT) as exc:
        print(f"onprem-lb status: cannot read the API: {k8s.explain(exc, args.namespace)}", file=sys.stderr)
        return 2
    finally:
        await k8s.close_client(client)
    if args.output == "json":
        print(json.dumps(report, indent=2))
    else:
        sys.stdout.write(status_report.render(report))
    return 0


def _check_timings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Options that are each valid but wrong together: one line, as argparse says the others."""
    pairs = [("renew_deadline", "lease_duration")]
    pairs += [("retry_period", "renew_deadline")] if args.command == "controller" else []
    pairs += (
        [("renew_period", "renew_deadline"), ("heartbeat_interval", "dead_after")] if args.command == "speaker" else []
    )
    for short, long in pairs:
        if getattr(args, short) >= getattr(args, long):
            first, second = ("--" + name.replace("_", "-") for name in (short, long))
            parser.error(
                f"{first} ({getattr(args, short):g} s) must be shorter than {second} ({getattr(args, long):g} s)"
            )


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "version":
        print(__version__)
        return 0
    if args.command == "convert-configmap":
        return _convert(args)
    if args.command == "status":
        try:
            return asyncio.run(_status(args))
        except KeyboardInterrupt:
            return 130
    if args.command == "control-plane" and args.check:
        return control_plane.check(args)
    if args.command != "control-plane":
        _check_timings(parser, args)
    _setup_logging(args.log_level)
    try:
        if args.command == "speaker":
            return asyncio.run(_speaker(args))
        if args.command == "control-plane":
            return asyncio.run(control_plane.run(args))
        return asyncio.run(_controller(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        logging.getLogger("onprem_lb").debug("unexpected error", exc_info=True)
        print(f"onprem-lb {args.command}: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
