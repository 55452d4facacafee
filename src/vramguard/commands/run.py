"""`vramguard run -- CMD ARGS`: start any server, sample it for its whole life, judge it.

The command starts from its argument vector, never through a shell, in its own process
group; SIGINT and SIGTERM sent to vramguard are forwarded to it once, and sampling goes on
until it exits; if it has not within --kill-after (or a second signal comes), its process
group is killed with SIGKILL. It is always reaped. Exit code: the command's own when
non-zero (128 + signal when a signal ended it), else 1 for a leak and 0 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from rich.console import Console

from vramguard import loadsignal, probes
from vramguard.commands.common import (
    EXIT_CODES,
    add_detector_arguments,
    add_load_arguments,
    add_log_arguments,
    add_metrics_arguments,
    add_noise_prior_argument,
    add_probe_arguments,
    detector_config,
    duration,
    fault_printer,
    on_stop_signals,
    open_log,
    print_result,
    start_exporter,
    time_scale,
)
from vramguard.commands.noiseprior import EarlierNoise
from vramguard.errors import UsageError
from vramguard.exporter import MetricsExporter
from vramguard.monitor import Monitor, StatusLine, export_to, result_document
from vramguard.samplelog import SampleLogWriter
from vramguard.tracker import LeakAlert, MemoryTracker, Sample


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a command and judge its memory over its life",
        description="Start CMD (no shell), sample its memory every --interval until it "
        "exits, show leak alerts as they come, and give the verdict. Per-process GPU "
        "memory where a probe has it, else host RSS. Without --window the verdict judges "
        "the run on its own time scale (a window of a third of it, at most 8 h).",
        epilog=EXIT_CODES + "; the command's own non-zero code wins",
    )
    parser.add_argument("--interval", type=duration, default=60.0, help="sampling interval")
    parser.add_argument("--metric", default=None, help="metric to judge (default: best)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_log_arguments(parser)
    add_detector_arguments(parser)
    add_noise_prior_argument(parser)
    add_load_arguments(parser, live=True)
    add_metrics_arguments(parser)
    add_probe_arguments(parser)
    parser.add_argument(
        "--kill-after", type=duration, default=10.0, metavar="DURATION",
        help="after forwarding SIGINT or SIGTERM, SIGKILL the command's process group if it "
        "has not exited within this time (default 10s; a second signal kills at once)",
    )  # fmt: skip
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS")
    parser.set_defaults(run=run)


def _kill(child: subprocess.Popen[bytes]) -> None:
    """SIGKILL the command and everything in its process group."""
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(child.pid, signal.SIGKILL)


def _exit_code_of(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def run(args: argparse.Namespace) -> int:
    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("run needs a command: vramguard run [options] -- CMD ARGS")
    load = loadsignal.from_arguments(args.load, args.load_file, args.load_command)
    earlier = EarlierNoise(args.noise_from, args.load)
    log = open_log(args, source={"command": argv}, config={"interval_s": args.interval})
    console = Console(stderr=True)
    exporter = None
    try:
        exporter = start_exporter(args)
        try:
            child = subprocess.Popen(argv, process_group=0)
        except FileNotFoundError:
            raise UsageError(f"command not found: {argv[0]}") from None
        except PermissionError:
            raise UsageError(f"cannot execute {argv[0]}: permission denied") from None
        except OSError as exc:
            raise UsageError(f"cannot start {argv[0]}: {exc.strerror}") from None
        return _supervise(child, argv, args, log, console, exporter, load, earlier)
    finally:
        if exporter is not None:
            exporter.close()
        if log is not None:
            log.close()
        probes.close()


def _supervise(
    child: subprocess.Popen[bytes],
    argv: list[str],
    args: argparse.Namespace,
    log: SampleLogWriter | None,
    console: Console,
    exporter: MetricsExporter | None,
    load: loadsignal.LoadSource | None = None,
    earlier: EarlierNoise | None = None,
) -> int:
    stopping: list[tuple[float, str]] = []  # when the first signal came, and which
    killed: list[bool] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child.poll() is not None:
            return
        if stopping:  # a second signal: no more waiting
            _kill(child)
            return
        stopping.append((time.monotonic(), signal.Signals(signum).name))
        child.send_signal(signum)

    def announce(alert: LeakAlert) -> None:
        console.print(f"[bold red]leak alert[/] at {alert.t:.0f}s: {alert.reason}; "
                      f"likely source: {alert.likely_source}")  # fmt: skip

    tracker = MemoryTracker(metric=args.metric, detector_config=detector_config(args))
    status = StatusLine(console, argv[0])
    feed = export_to(exporter)

    def on_sample(monitor: Monitor, sample: Sample) -> None:
        if earlier is not None:
            earlier.give_live(monitor.tracker)
        if feed is not None:
            feed(monitor, sample)
        status.show(monitor)

    monitor = Monitor(
        child.pid, tracker, log, announce, on_sample,
        time_limit_s=args.probe_time_limit, on_fault=fault_printer(console), load_source=load,
    )  # fmt: skip
    try:
        with on_stop_signals(forward):
            while child.poll() is None:
                try:
                    monitor.sample()
                except probes.NoSuchProcess:
                    break
                wait = args.interval
                if stopping and not killed:
                    left = stopping[0][0] + args.kill_after - time.monotonic()
                    if left <= 0:
                        print(f"vramguard: {argv[0]} did not exit within {args.kill_after:g}s "
                              f"of {stopping[0][1]}: killed", file=sys.stderr)  # fmt: skip
                        _kill(child)
                        killed.append(True)
                    wait = max(0.0, min(wait, left))
                try:
                    child.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    continue
            returncode = child.wait()
    finally:
        status.close()
        monitor.close()
    config = detector_config(args, monitor.duration_s)
    prior, prior_doc = earlier.measure(monitor.tracker.metric, config) if earlier else (None, None)
    trend = monitor.verdict(config, args.budget, prior)
    result = result_document(monitor, trend, command=argv, returncode=returncode,
                             time_scale=time_scale(args, config), noise_prior=prior_doc,
                             load_field=load.description if load else None)  # fmt: skip
    if log is not None:
        log.result(result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_result(result)
    if returncode != 0:
        print(f"vramguard: {argv[0]} exited with {returncode}", file=sys.stderr)
        return _exit_code_of(returncode)
    return 1 if trend.verdict == "leak" else 0
