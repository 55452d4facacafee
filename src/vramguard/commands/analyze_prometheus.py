"""`vramguard analyze --prometheus URL --query PROMQL`: a verdict on every series of a range
query, for the history operators already keep (dcgm-exporter, node_exporter, vramguard)."""

from __future__ import annotations

import argparse
import base64
import contextlib
import html
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vramguard.commands.common import (
    argument_type,
    bounded,
    check_writable,
    detector_config,
    duration,
    warn,
    write_report,
)
from vramguard.errors import UsageError
from vramguard.promhistory import (
    UNITS,
    History,
    PrometheusError,
    RangeQuery,
    iso,
    parse_time,
    read_range,
)
from vramguard.report import page_head, plot_png, trend_document
from vramguard.trend import DetectorConfig, Trend, detect_leak
from vramguard.units import format_bytes, format_duration

DEFAULT_SINCE_S = 7 * 86400.0
MAX_PLOTS = 12


def add_prometheus_arguments(parser: Any) -> None:
    group = parser.add_argument_group("history from Prometheus (instead of FILE)")
    group.add_argument("--prometheus", default=None, metavar="URL",
                       help="read a range query from Prometheus: http://HOST:9090")  # fmt: skip
    group.add_argument("--query", default=None, metavar="PROMQL",
                       help="the series to judge, one verdict each (PromQL)")  # fmt: skip
    group.add_argument("--since", type=duration, default=None, metavar="DURATION",
                       help="how far back from --end (default 7d)")  # fmt: skip
    group.add_argument("--start", type=argument_type(parse_time), default=None, metavar="TIME",
                       help="range start: Unix seconds or ISO 8601 (UTC by default)")  # fmt: skip
    group.add_argument("--end", type=argument_type(parse_time), default=None, metavar="TIME",
                       help="range end (default now)")  # fmt: skip
    group.add_argument("--step", type=duration, default=60.0, metavar="DURATION",
                       help="resolution of the query (default 60s)")  # fmt: skip
    group.add_argument("--unit", default=None, choices=sorted(UNITS, key=UNITS.__getitem__),
                       type=str.lower, help="unit of the values where the metric name does "
                       "not say it (dcgm's *_FB_* are MiB, *_bytes are bytes)")  # fmt: skip
    group.add_argument("--jobs", type=bounded(int, "number of jobs", 1, 256), default=None,
                       metavar="N", help="series judged at once (default: one per CPU "
                       f"from {PARALLEL_POINTS:,} points in all, else 1)")  # fmt: skip
    group.add_argument("--timeout", type=duration, default=30.0, metavar="DURATION",
                       help="how long each request may take (default 30s)")  # fmt: skip


def range_query(args: argparse.Namespace) -> RangeQuery:
    """The query the options ask for; UsageError for a contradiction."""
    if args.query is None:
        raise UsageError("--prometheus needs --query PROMQL (e.g. --query DCGM_FI_DEV_FB_USED)")
    if args.since is not None and args.start is not None:
        raise UsageError("give --since or --start, not both")
    if args.metric is not None or args.plot is not None:
        raise UsageError(
            "--metric and --plot are for a log file; --prometheus judges every series of "
            "the query (narrow it in PROMQL, see them all with --html)"
        )
    end = args.end if args.end is not None else time.time()
    start = args.start if args.start is not None else end - (args.since or DEFAULT_SINCE_S)
    try:
        return RangeQuery(args.prometheus, args.query, start, end, args.step)
    except PrometheusError as exc:
        raise UsageError(str(exc)) from None


def _verdict(times_s: Any, values_bytes: Any, config: DetectorConfig, budget: Any) -> Trend:
    return detect_leak(
        times_s=times_s, values_bytes=values_bytes, config=config, budget_bytes=budget
    )


#: from this many points in all, judging series in parallel pays for starting the workers
#: (a week at one minute is 10,080 points and about 1.6 s of one core; a worker starts in ~1 s)
PARALLEL_POINTS = 50_000


def _default_jobs(points: int, series: int) -> int:
    """One job per CPU this process may run on, for a history long enough to pay for them."""
    if points < PARALLEL_POINTS or series < 2:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, series))


def _realtime() -> bool:
    """Whether this process runs under a real-time policy (SVT-AV1 sets SCHED_FIFO 99 on a
    process that opened a session as root): workers spawned from it livelock while they
    start, so it judges the series itself."""
    if not hasattr(os, "sched_getscheduler"):
        return False
    return os.sched_getscheduler(0) in (os.SCHED_FIFO, os.SCHED_RR)


def _ordinary_scheduling() -> None:
    """A worker runs at ordinary priority: a process SVT-AV1 opened a session in (as root)
    is SCHED_FIFO 99, and workers that inherit that starve the machine, spinning."""
    if hasattr(os, "sched_setscheduler"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def judge_all(history: History, args: argparse.Namespace) -> list[tuple[dict[str, Any], Trend]]:
    """Every series' verdict as a JSON-ready dictionary (times from its first point); the
    series are judged in `--jobs` processes (by default one per CPU for a long history:
    the detector replays every bucket, seconds for a week at one minute on one core)."""
    series = history.series
    starts = [float(s.times_s[0]) for s in series]
    times = [s.times_s - t0 for s, t0 in zip(series, starts, strict=True)]
    # each series on its own time scale (a third of its span, at most 8 h) unless --window
    configs = [detector_config(args, float(t[-1]) if len(t) else 0.0) for t in times]
    work = (times, [s.values_bytes for s in series], configs,
            [args.budget] * len(series))  # fmt: skip
    points = sum(len(t) for t in times)
    jobs = min(args.jobs or _default_jobs(points, len(series)), len(series))
    if jobs > 1 and not _realtime():
        # fresh interpreters, not forks: a fork of a process whose BLAS threads are running
        # (a test suite, an embedding server) spins forever in the child's first matrix op
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=spawn, initializer=_ordinary_scheduling) as pool:
            trends = list(pool.map(_verdict, *work))
    else:
        trends = list(map(_verdict, *work))
    judged = []
    for one, t0, trend in zip(series, starts, trends, strict=True):
        document = {"series": one.name, "labels": dict(one.labels), "start": iso(t0)}
        document.update(trend_document(trend, one.name))
        document["budget_bytes"] = args.budget
        judged.append((document, trend))
    return judged


def run_prometheus(args: argparse.Namespace) -> int:
    """Read, judge every series, print the table or JSON, write --html; 1 if any leaks."""
    query = range_query(args)
    if args.html is not None:
        check_writable(args.html, args.force)
    try:
        history = read_range(query, unit=args.unit, timeout_s=args.timeout)
    except PrometheusError as exc:
        raise UsageError(str(exc)) from None
    if not history.series:
        why = "; ".join(f"{name}: {reason}" for name, reason in history.unreadable.items())
        raise UsageError(f"no series of the query could be read ({why})")
    judged = judge_all(history, args)
    documents = [document for document, _ in judged]
    leaking = [d["series"] for d in documents if d["verdict"] == "leak"]
    verdicts = {d["verdict"] for d in documents}
    overall = "leak" if leaking else "stable" if "stable" in verdicts else "insufficient-data"
    result = {
        "verdict": overall,
        "source": {
            "prometheus": query.shown_url,
            "query": query.query,
            "start": iso(query.start_s),
            "end": iso(query.end_s),
            "step_s": query.step_s,
        },
        "leaking": leaking,
        "series": documents,
        "unreadable": [{"series": n, "reason": r} for n, r in history.unreadable.items()],
        "warnings": history.warnings,
    }
    _warn(history)
    if args.html:
        write_report(args.html, _page(result, history, judged), args.force)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(result)
    return 1 if leaking else 0


def _warn(history: History) -> None:
    if history.unreadable:
        names = "; ".join(f"{n} ({r})" for n, r in history.unreadable.items())
        total = len(history.unreadable) + len(history.series)
        warn(f"{len(history.unreadable)} of {total} series could not be read and are not "
             f"judged: {names}")  # fmt: skip
    for warning in history.warnings:
        warn(warning)


def _rows(document: dict[str, Any]) -> list[str]:
    slope = document["slope_bytes_per_hour"]
    return [
        document["series"],
        document["verdict"],
        "n/a" if slope is None else f"{slope / 1e6:+.2f}",
        format_duration(document["first_alert_t"]) if document["first_alert_t"] else "-",
        format_bytes(document["peak_bytes"]),
        str(document["samples"]),
        document["reason"],
    ]


HEADINGS = ["series", "verdict", "growth MB/h (whole series)", "first alert", "peak",
            "samples", "reason"]  # fmt: skip


def _print_table(result: dict[str, Any]) -> None:
    """The headline, a row per series (the reason apart: it is a sentence), then the reason
    of each series that is not stable."""
    console = Console()
    source = result["source"]
    leaking = result["leaking"]
    colour = "red" if leaking else "green"
    count = len(result["series"])
    headline = (
        f"{len(leaking)} of {count} series leak" if leaking else f"no series of {count} leaks"
    )
    console.print(f"[bold {colour}]{result['verdict']}[/]: {headline} "
                  f"({escape(source['query'])}, {source['start']} to {source['end']})")  # fmt: skip
    table = Table()
    for heading in HEADINGS[:-1]:
        table.add_column(heading, overflow="fold")
    for document in result["series"]:
        style = {"leak": "red", "stable": "green"}.get(document["verdict"], "yellow")
        table.add_row(*(escape(cell) for cell in _rows(document)[:-1]), style=style)
    console.print(table)
    for document in result["series"]:
        if document["verdict"] != "stable":
            console.print(f"{escape(document['series'])}: {escape(document['reason'])}")


def _page(
    result: dict[str, Any], history: History, judged: list[tuple[dict[str, Any], Trend]]
) -> str:
    """One self-contained page: the table, then a plot of each leaking series."""
    source = result["source"]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADINGS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in _rows(d)) + "</tr>"
        for d in result["series"]
    )
    plots: list[str] = []
    by_name = {s.name: s for s in history.series}
    for document, trend in judged:
        if document["verdict"] != "leak" or len(plots) >= MAX_PLOTS:
            continue
        series = by_name[document["series"]]
        png = plot_png(series.times_s - series.times_s[0], series.values_bytes, series.name, trend)
        image = base64.b64encode(png).decode()
        plots.append(f'<h2>{html.escape(series.name)}</h2><img alt="{html.escape(series.name)}" '
                     f'src="data:image/png;base64,{image}">')  # fmt: skip
    notes = [f"{u['series']}: {u['reason']}" for u in result["unreadable"]] + result["warnings"]
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    title = f"vramguard analyze: {source['query']}"
    return f"""{page_head(title)}
<p>{html.escape(result["verdict"])}: {len(result["leaking"])} of {len(result["series"])} series
leak; {html.escape(source["prometheus"])}, {source["start"]} to {source["end"]},
step {source["step_s"]:g} s</p>
<table><tr>{head}</tr>
{body}
</table>
<ul>{items}</ul>
{"".join(plots)}
</body></html>
"""
