"""`vramguard analyze FILE`: the detector replayed over any log, and its verdict."""

from __future__ import annotations

import argparse
import json
from typing import Any

from vramguard.commands.analyze_prometheus import add_prometheus_arguments, run_prometheus
from vramguard.commands.common import (
    EXIT_CODES,
    add_detector_arguments,
    add_load_arguments,
    add_noise_prior_argument,
    check_writable,
    detector_config,
    print_result,
    time_scale,
    warn,
    write_report,
)
from vramguard.commands.noiseprior import earlier_noise, load_series, read_earlier
from vramguard.errors import UsageError
from vramguard.report import html_page, plot_png, summary_rows, trend_document
from vramguard.samplelog import LogError, LogFormatError, SampleLog, read_log
from vramguard.tracker import attribute
from vramguard.trend import Trend, detect_leak


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="judge a log (vramguard JSONL or nvidia-smi CSV)",
        description="Replay the leak detector over a log, sample by sample, and give the "
        "verdict. Reads vramguard sample logs and nvidia-smi --query-gpu / "
        "--query-compute-apps CSV logs, or a Prometheus range query. Without --window a "
        "log is judged on its own time scale (a window of a third of it, at most 8 h).",
        epilog=EXIT_CODES,
    )
    parser.add_argument("file", nargs="?", help="the log (or --prometheus URL --query PROMQL)")
    parser.add_argument("--metric", default=None, help="series to judge (default: the best)")
    parser.add_argument("--json", action="store_true", help="print JSON (bytes, seconds)")
    parser.add_argument("--plot", default=None, metavar="PNG", help="write a plot")
    parser.add_argument("--html", default=None, metavar="FILE", help="write an HTML report")
    parser.add_argument("--force", action="store_true", help="overwrite --plot/--html files")
    add_noise_prior_argument(parser)
    add_detector_arguments(parser)
    add_load_arguments(parser)
    add_prometheus_arguments(parser)
    parser.set_defaults(run=run)


def analyze(
    log: SampleLog, metric: str | None, args: argparse.Namespace
) -> tuple[dict[str, Any], Trend]:
    """The verdict on one series of a log, as a JSON-ready dictionary."""
    name, (t, values) = log.metric(metric)
    budget = args.budget
    if budget is None:
        known = log.budget_bytes(name)
        budget = None if known is None else int(known)
    load_field, load = load_series(log, getattr(args, "load", None), t)
    config = detector_config(args, float(t[-1] - t[0]) if len(t) else 0.0)
    earlier = read_earlier(getattr(args, "noise_from", None))
    prior, prior_doc = earlier_noise(earlier, name, load_field, config)
    try:
        trend = detect_leak(t, values, config, budget, load=load, noise_prior=prior)
    except ValueError as exc:
        raise LogFormatError(f"{log.path}: {exc}") from None
    result = trend_document(trend, name, float(t[0]))
    result.update(
        budget_bytes=budget, log_kind=log.kind, metrics=sorted(log.series), warnings=log.warnings,
        load_field=load_field, time_scale=time_scale(args, config), noise_prior=prior_doc,
    )  # fmt: skip
    if trend.verdict == "leak" and log.kind == "vramguard":
        alerted = float(t[0]) + (trend.first_alert_t or trend.duration_s)
        since = alerted - 3600.0
        result["likely_source"] = attribute(log.samples_between(since, alerted), name, since)
    return result, trend


def run(args: argparse.Namespace) -> int:
    if args.prometheus is not None or args.file is None:
        if args.noise_from is not None:
            raise UsageError("--noise-from reads an earlier log FILE; it is not for --prometheus")
        if args.file is not None:
            raise UsageError("give a log FILE or --prometheus URL, not both")
        if args.prometheus is None:
            raise UsageError("give a log FILE, or --prometheus URL --query PROMQL")
        return run_prometheus(args)
    for target in (args.plot, args.html):
        if target is not None:
            check_writable(target, args.force)
    try:
        log = read_log(args.file)
        result, trend = analyze(log, args.metric, args)
    except LogError as exc:
        raise UsageError(str(exc)) from None
    for warning in log.warnings:
        warn(warning)
    if args.plot or args.html:
        _write_reports(log, result, trend, args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_result(result)
    return 1 if result["verdict"] == "leak" else 0


def _write_reports(
    log: SampleLog, result: dict[str, Any], trend: Trend, args: argparse.Namespace
) -> None:
    name, (t, values) = log.metric(result["metric"])
    png = plot_png(t, values, name, trend, log.samples, title=f"{args.file}: {trend.verdict}")
    if args.plot:
        write_report(args.plot, png, args.force)
    if args.html:
        page = html_page(f"vramguard analyze: {args.file}", png, summary_rows(result),
                         notes=[result["reason"], *result["warnings"]])  # fmt: skip
        write_report(args.html, page, args.force)
