"""`vramguard analyze FILE`: the detector replayed over any log, and its verdict."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np
import numpy.typing as npt

from vramguard.commands.analyze_prometheus import add_prometheus_arguments, run_prometheus
from vramguard.commands.common import (
    EXIT_CODES,
    add_detector_arguments,
    add_load_arguments,
    check_writable,
    detector_config,
    print_result,
    time_scale,
    write_report,
)
from vramguard.errors import UsageError
from vramguard.noise import Variogram
from vramguard.report import html_page, plot_png, summary_rows, trend_document
from vramguard.samplelog import LogError, LogFormatError, SampleLog, read_log
from vramguard.tracker import attribute
from vramguard.trend import DetectorConfig, Trend, detect_leak, noise_from
from vramguard.units import format_duration


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
    parser.add_argument(
        "--noise-from", default=None, metavar="LOG",
        help="an earlier log of the same process: its noise stands in for the history a "
        "young run has not shown yet (a slow wander its first hours cannot tell from a leak)",
    )  # fmt: skip
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
    prior, prior_doc = earlier_noise(getattr(args, "noise_from", None), name, load_field, config)
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


def earlier_noise(
    path: str | None, name: str, load_field: str | None, config: DetectorConfig
) -> tuple[Variogram | None, dict[str, Any] | None]:
    """The noise of the same series in an earlier log (--noise-from), measured on the scale
    this run is judged on, and what the verdict says of it; LogError for a log that lacks
    the series or is too short to have shown its noise."""
    if path is None:
        return None, None
    earlier = read_log(path)
    chosen, (t, values) = earlier.metric(name)
    _, load = load_series(earlier, load_field, t) if load_field else (None, None)
    try:
        prior = noise_from(t, values, config, load=load)
    except ValueError as exc:
        raise LogFormatError(f"{path}: {exc}") from None
    if prior is None:
        needs = config.warmup_s + config.min_points * config.bucket_s
        raise LogError(
            f"{path} is too short to show its noise on this scale: it needs more than "
            f"{format_duration(needs)} of {chosen}"
        )
    history_s = prior.history_buckets * config.bucket_s
    return prior, {"from": str(path), "metric": chosen, "history_s": history_s}


def load_series(
    log: SampleLog, field: str | None, times: npt.NDArray[np.float64]
) -> tuple[str | None, npt.NDArray[np.float64] | None]:
    """The load column at the metric's sample times (its last value at or before each),
    named by --load, else `sessions_active` where the log has it. LogError for a field the
    log lacks or a negative load."""
    name = field or ("sessions_active" if "sessions_active" in log.series else None)
    if name is None:
        return None, None
    if name not in log.series:
        known = ", ".join(sorted(log.series)) or "none"
        raise LogError(f"{log.path} has no load field {name!r} for --load (it has: {known})")
    load_t, load_v = log.series[name]
    if len(load_v) and float(np.min(load_v)) < 0:
        raise LogError(f"{log.path}: load field {name!r} goes negative; a load is a count")
    at = np.searchsorted(load_t, times, side="right") - 1
    aligned = np.where(at >= 0, load_v[np.clip(at, 0, None)], np.nan)
    return name, aligned


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
        print(f"vramguard: warning: {warning}", file=sys.stderr)
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
