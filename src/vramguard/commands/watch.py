"""`vramguard watch [--pid PID]`: a live view of a process's memory and its trend.

Like `gpustat --watch`, with the detector running: the table refreshes every interval,
alerts appear as they come, and Ctrl-C (or the process ending) prints the verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

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
    open_log,
    pid_argument,
    print_result,
    start_exporter,
    time_scale,
)
from vramguard.commands.noiseprior import EarlierNoise
from vramguard.errors import UsageError
from vramguard.fields import FIELDS
from vramguard.monitor import Monitor, export_to, result_document
from vramguard.tracker import LeakAlert, MemoryTracker
from vramguard.units import format_bytes, format_duration, format_rate


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "watch",
        help="live view of a process's memory and trend",
        description="Sample a process every --interval and show its memory, the trend and "
        "any leak alert, until Ctrl-C or until it exits. Without --window the verdict "
        "judges the run on its own time scale (a window of a third of it, at most 8 h).",
        epilog=EXIT_CODES,
    )
    parser.add_argument(
        "--pid", type=pid_argument, default=None, help="process (default: this one)"
    )
    parser.add_argument("--interval", type=duration, default=1.0, help="sampling interval")
    parser.add_argument("--metric", default=None, help="metric to judge (default: best)")
    parser.add_argument("--count", type=int, default=None, help="stop after N samples")
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")
    add_log_arguments(parser)
    add_detector_arguments(parser)
    add_noise_prior_argument(parser)
    add_load_arguments(parser, live=True)
    add_metrics_arguments(parser)
    add_probe_arguments(parser)
    parser.set_defaults(run=run)


def _view(monitor: Monitor, alerts: list[LeakAlert]) -> Group:
    sample = monitor.last
    table = Table(title=f"pid {monitor.pid}", title_justify="left")
    table.add_column("field")
    table.add_column("now", justify="right")
    table.add_column("peak", justify="right")
    for field in FIELDS:
        name = field.name
        value = sample.get(name) if sample and field.source == "probe" else None
        if value is None:
            continue
        peak = monitor.tracker.peaks.get(name)
        bytes_ = field.is_bytes
        table.add_row(
            name,
            format_bytes(value) if bytes_ else f"{value:,.0f}",
            (format_bytes(peak) if bytes_ else f"{peak:,.0f}") if peak is not None else "",
        )
    trend = monitor.tracker.trend()
    line = Text(f"{monitor.tracker.metric}: ")
    if trend.slope_bytes_per_hour is None:
        line.append("learning (needs more samples)", style="yellow")
    else:
        low, high = trend.slope_ci_bytes_per_hour or (0.0, 0.0)
        line.append(
            f"{format_rate(trend.slope_bytes_per_hour)} [{format_rate(low)}, {format_rate(high)}]"
        )
    parts: list[Any] = [table, line]
    for alert in alerts[-3:]:
        eta = format_duration(alert.time_to_exhaustion_s)
        text = f"leak alert at {alert.t:.0f}s: {alert.reason}; source {alert.likely_source}"
        parts.append(Text(f"{text}; exhaustion in {eta}", style="bold red"))
    return Group(*parts)


def run(args: argparse.Namespace) -> int:
    pid = args.pid if args.pid is not None else os.getpid()
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be at least 1")
    load = loadsignal.from_arguments(args.load, args.load_file, args.load_command)
    earlier = EarlierNoise(args.noise_from, args.load)
    log = open_log(args, source={"pid": pid}, config={"interval_s": args.interval})
    alerts: list[LeakAlert] = []
    metric = args.metric or (None if args.pid is not None else "device_used_bytes")
    tracker = MemoryTracker(metric=metric, detector_config=detector_config(args))
    exporter = start_exporter(args)
    monitor = Monitor(pid, tracker, log, alerts.append, export_to(exporter),
                      time_limit_s=args.probe_time_limit,
                      on_fault=fault_printer(Console(stderr=True)), load_source=load)  # fmt: skip
    try:
        try:
            monitor.sample()
        except probes.NoSuchProcess as exc:
            raise UsageError(str(exc)) from None
        if monitor.last is not None and monitor.last.get(monitor.tracker.metric or "") is None:
            monitor.tracker.metric = "host_rss_bytes"  # no device figure here: own memory
        earlier.give_live(monitor.tracker)  # the judged metric is settled now
        _loop(monitor, alerts, args, Console(stderr=args.json))
        config = detector_config(args, monitor.duration_s)
        prior, prior_doc = earlier.measure(monitor.tracker.metric, config)
        trend = monitor.verdict(config, args.budget, prior)
        result = result_document(monitor, trend, pid=pid, time_scale=time_scale(args, config),
                                 noise_prior=prior_doc,
                                 load_field=load.description if load else None)  # fmt: skip
        if log is not None:
            log.result(result)
    finally:
        monitor.close()
        if exporter is not None:
            exporter.close()
        if log is not None:
            log.close()
        probes.close()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_result(result)
    return 1 if trend.verdict == "leak" else 0


def _loop(
    monitor: Monitor, alerts: list[LeakAlert], args: argparse.Namespace, console: Console
) -> None:
    taken = 1
    try:
        with Live(_view(monitor, alerts), console=console, auto_refresh=False) as live:
            while args.count is None or taken < args.count:
                time.sleep(args.interval)
                try:
                    monitor.sample()
                except probes.NoSuchProcess:
                    console.print(f"process {monitor.pid} ended")
                    return
                taken += 1
                live.update(_view(monitor, alerts), refresh=True)
    except KeyboardInterrupt:
        return
