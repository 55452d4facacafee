"""`vramguard agent`: a node agent for fleets. Finds the processes holding GPU memory (or
those `--match`, `--user`, `--cgroup` select) every interval, runs a leak detector for each,
and serves per-process Prometheus metrics until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import sys
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.markup import escape

from vramguard import probes
from vramguard.agent.census import NodeReader
from vramguard.agent.discovery import Selector
from vramguard.agent.fleet import Fleet, LogSettings
from vramguard.agent.loop import Agent
from vramguard.agent.metrics import AgentExporter
from vramguard.commands.common import (
    add_detector_arguments,
    add_metrics_arguments,
    add_probe_arguments,
    bounded,
    detector_config,
    duration,
    fault_printer,
    on_stop_signals,
    positive_int,
    size,
    start_exporter,
    stop_by_name,
)
from vramguard.errors import UsageError
from vramguard.units import format_bytes, format_duration

DEFAULT_MAX_PROCESSES = 256


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "agent",
        help="watch every GPU process on this node, each with its own leak detector",
        description="Every --interval, find the processes holding GPU memory (NVML, DRM "
        "fdinfo) or, with --match/--user/--cgroup, the processes that pass every selector "
        "given; judge each with its own leak detector; serve per-process metrics "
        "(--metrics-port). Runs until SIGTERM or Ctrl-C.",
        epilog="exit codes: 0 stopped by a signal, or --count passes without a leak; "
        "1 a leak alert during a --count run; 2 bad input or usage",
    )
    parser.add_argument("--interval", type=duration, default=15.0, help="pass interval (15s)")
    parser.add_argument("--match", default=None, metavar="REGEX",
                        help="watch processes whose command line matches")  # fmt: skip
    parser.add_argument("--user", action="append", default=None, metavar="USER",
                        help="watch processes of this user (name or uid; repeatable)")  # fmt: skip
    parser.add_argument("--cgroup", default=None, metavar="PATH",
                        help="watch processes in this cgroup or below it (e.g. "
                        "/system.slice/encoder.service, /kubepods.slice)")  # fmt: skip
    parser.add_argument(
        "--max-processes", type=bounded(int, "number", 1, 100_000),
        default=DEFAULT_MAX_PROCESSES, metavar="N",
        help=f"watch at most N processes (default {DEFAULT_MAX_PROCESSES}); the rest are "
        "counted in vramguard_agent_processes_over_cap",
    )  # fmt: skip
    parser.add_argument("--log-dir", default=None, metavar="DIR",
                        help="write a JSONL sample log per process into DIR")  # fmt: skip
    parser.add_argument("--log-max-size", type=size, default=16 * 10**6, metavar="SIZE",
                        help="rotate a process's log at this size (default 16MB)")  # fmt: skip
    parser.add_argument("--log-keep", type=bounded(int, "number", 0, 100), default=3,
                        metavar="N", help="rotated logs kept per process (default 3)")  # fmt: skip
    parser.add_argument("--count", type=positive_int, default=None,
                        help="stop after N passes")  # fmt: skip
    parser.add_argument("--json", action="store_true",
                        help="print events (alerts, exits) as JSON lines on stdout")  # fmt: skip
    add_detector_arguments(parser)
    add_metrics_arguments(parser)
    add_probe_arguments(parser)
    parser.set_defaults(run=run)


def _uid(user: str) -> int:
    if user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise UsageError(f"--user {user!r}: no such user") from None


def selector(args: argparse.Namespace) -> Selector:
    """The selectors asked for; each bad one is one clear line."""
    match = None
    if args.match is not None:
        try:
            match = re.compile(args.match)
        except re.error as exc:
            raise UsageError(f"--match {args.match!r}: not a regular expression ({exc})") from None
    uids = frozenset(_uid(u) for u in args.user) if args.user else None
    if args.cgroup is not None and not args.cgroup.startswith("/"):
        raise UsageError(f"--cgroup {args.cgroup!r}: give the cgroup's path, starting with /")
    return Selector(match, uids, args.cgroup)


def log_settings(args: argparse.Namespace) -> LogSettings | None:
    if args.log_dir is None:
        return None
    if not os.path.isdir(args.log_dir):
        raise UsageError(f"--log-dir {args.log_dir}: no such folder")
    if not os.access(args.log_dir, os.W_OK | os.X_OK):
        raise UsageError(f"--log-dir {args.log_dir}: not writable")
    if args.log_max_size < 4096:
        raise UsageError("--log-max-size must be at least 4kB")
    config = {"interval_s": args.interval, "agent": True}
    return LogSettings(Path(args.log_dir).resolve(), args.log_max_size, args.log_keep, config)


class EventPrinter:
    """Alerts and exits: JSON lines on stdout with --json, else one line each on stderr."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.leaks = 0

    def __call__(self, event: dict[str, Any]) -> None:
        if event["event"] == "leak_alert":
            self.leaks += 1
        if self.as_json:
            print(json.dumps(event), flush=True)
            return
        who = f"pid {event['pid']} ({escape(event['comm'])}"
        who += f", {escape(event['unit'])}" if event.get("unit") else ""
        who += f", container {event['container']}" if event.get("container") else ""
        who += ")"
        if event["event"] == "leak_alert":
            eta = event.get("time_to_exhaustion_s")
            self.console.print(
                f"[bold red]leak[/]: {who}: {event['metric']} "
                f"{event['slope_bytes_per_hour'] / 1e6:+.1f} MB/h, now "
                f"{format_bytes(event['level_bytes'])}"
                + (f"; exhaustion in {format_duration(eta)}" if eta is not None else "")
            )
            return
        slope = event.get("slope_bytes_per_hour")
        growth = f" ({slope / 1e6:+.2f} MB/h)" if slope is not None else ""
        self.console.print(
            f"{who} {event['event']} after {format_duration(event['duration_s'])}: "
            f"{event['verdict']}{growth}"
        )


def run(args: argparse.Namespace) -> int:
    chosen = selector(args)
    logs = log_settings(args)
    printer = EventPrinter(args.json)
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    fleet = Fleet(detector_config(args), host_budget_bytes=psutil.virtual_memory().total,
                  budget_bytes=args.budget, logs=logs, on_event=printer,
                  on_fault=fault_printer(console))  # fmt: skip
    exporter = start_exporter(args, AgentExporter)
    agent = Agent(NodeReader(chosen), fleet, args.interval, args.max_processes,
                  args.probe_time_limit, exporter)  # fmt: skip
    what = "processes holding GPU memory" if not chosen.any else "the selected processes"
    print(f"vramguard agent: watching {what} every {format_duration(args.interval)}",
          file=sys.stderr)  # fmt: skip
    try:
        with on_stop_signals(stop_by_name(agent.stop)):
            agent.step()
            if agent.gpu_reason is not None:
                console.print(f"vramguard agent: no GPU probe answers ({escape(agent.gpu_reason)})"
                              "; judging host memory (RSS)")  # fmt: skip
            agent.run(args.count)
    finally:
        agent.close()
        probes.close()
    return 1 if args.count is not None and printer.leaks else 0
