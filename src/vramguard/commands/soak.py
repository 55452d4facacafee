"""`vramguard soak`: the plan's 24-hour test on a real encoder, runnable for seconds in CI.

A bare `vramguard soak` encodes one minute of 1080p H.264 stream and judges it. Every time
option is stream time (frames / fps); `--realtime` paces frames at --fps. The plan's flag
names are accepted: `--log-gpu-memory [FILE]` for --log and `--gpu-memory-sample-interval`
for --sample-interval. Exit 0 within the criteria, 1 otherwise, 2 bad input; 128 + the
signal when SIGINT or SIGTERM stopped it (after the result and a complete log). A fault the
run cannot go on after (no encoder opens mid-run) ends it with the result written and exit 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vramguard import probes
from vramguard.commands.common import (
    add_metrics_arguments,
    add_probe_arguments,
    argument_type,
    check_writable,
    duration,
    fault_printer,
    on_stop_signals,
    positive_int,
    ratio,
    signal_exit_code,
    size,
    start_exporter,
    stop_by_name,
    write_report,
)
from vramguard.criteria import CriterionRow
from vramguard.encode import CODECS, EncoderConfig, EncoderError, EncoderUnavailable
from vramguard.encode.backends import check_explicit
from vramguard.errors import UsageError
from vramguard.exporter import MetricsExporter
from vramguard.report import html_page, plot_png
from vramguard.samplelog import LogError, SampleLogWriter
from vramguard.soak import LEAK_SEAM_ENV, Criteria, SoakConfig, SoakRunner
from vramguard.soakresult import SoakResult
from vramguard.sources import SOURCES
from vramguard.tracker import Sample
from vramguard.units import format_bytes, format_duration, format_rate, parse_resolution


def _ladder(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",")]
    try:
        rungs = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"invalid ladder {text!r}: use kbps separated by commas, e.g. 2000,5000"
        ) from None
    if not rungs or any(r <= 0 or r > 1_000_000 for r in rungs):
        raise ValueError(f"invalid ladder {text!r}: every rung must be 1 to 1000000 kbps")
    return rungs


def _option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value:
        raise ValueError(f"invalid encoder option {text!r}: use KEY=VALUE, e.g. preset=veryfast")
    return key.strip(), value


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "soak",
        help="the long-session test on a real encoder, judged against the criteria",
        description="Encode a synthetic stream through the managed pipeline (staging pool, "
        "session pool, reference policy) for --duration of stream time, sample memory, and "
        "judge the run against the success criteria.",
        epilog="exit codes: 0 every criterion met, 1 a criterion missed (or the run failed), "
        "2 bad input or usage; 128 + the signal when one stopped it",
    )
    parser.add_argument("--codec", default="h264", choices=CODECS)
    parser.add_argument("--encoder", default="auto", help="auto, or an FFmpeg encoder name")
    parser.add_argument(
        "--encoder-option", "-x", dest="encoder_options", action="append",
        type=argument_type(_option), default=[], metavar="KEY=VALUE",
        help="an FFmpeg option for the encoder, over vramguard's own (repeatable; e.g. "
        "svtav1-params=pred-struct=1:rc=2:lp=1)",
    )  # fmt: skip
    parser.add_argument("--bitrate", type=positive_int, default=5000, help="kbps (default 5000)")
    parser.add_argument("--resolution", type=argument_type(parse_resolution), default=(1920, 1080))
    parser.add_argument("--fps", type=positive_int, default=60)
    parser.add_argument("--duration", type=duration, default=60.0, help="stream time (default 60s)")
    parser.add_argument(
        "--sample-interval", "--gpu-memory-sample-interval", dest="sample_interval",
        type=duration, default=None, help="stream time between samples",
    )  # fmt: skip
    parser.add_argument("--log", default=None, metavar="FILE", help="JSONL sample log")
    parser.add_argument(
        "--log-gpu-memory", nargs="?", const="", default=None, metavar="FILE",
        help="the plan's name for --log (a dated file name when none is given)",
    )  # fmt: skip
    parser.add_argument("--force", action="store_true", help="overwrite --log/--html files")
    parser.add_argument("--realtime", action="store_true", help="pace frames at --fps")
    parser.add_argument(
        "--prefetch", action=argparse.BooleanOptionalAction, default=None,
        help="draw frames ahead on a thread of their own (default: for testsrc2, whose frames "
        "cost 1.3 ms at 1080p; not for the synthetic source, 0.2 ms)",
    )  # fmt: skip
    parser.add_argument(
        "--source", default="synthetic", choices=SOURCES,
        help="test pictures: synthetic (every pixel moves: the encoder's worst case) or "
        "testsrc2 (FFmpeg's pattern, as `ffmpeg -f lavfi -i testsrc2` encodes it)",
    )  # fmt: skip
    parser.add_argument("--bitrate-ladder", type=argument_type(_ladder), default=None)
    parser.add_argument("--adapt-every", type=duration, default=None, help="next ladder rung")
    parser.add_argument("--reconnect-every", type=duration, default=None, help="client reconnects")
    parser.add_argument(
        "--baseline", action="store_true",
        help="the unmanaged way: a new encoder per change, a new buffer per frame",
    )  # fmt: skip
    parser.add_argument("--max-sessions", type=positive_int, default=8)
    parser.add_argument(
        "--max-idle-bytes", type=size, default=None, metavar="SIZE",
        help="idle encoder memory the session pool may keep warm (default: one warm session "
        "of this codec and size, the memory of one encoder at a time, like the baseline)",
    )  # fmt: skip
    parser.add_argument("--reference-budget", type=size, default=50 * 10**6)
    parser.add_argument("--staging-budget", type=size, default=None)
    parser.add_argument("--max-peak", type=size, default=500 * 10**6, help="criterion (500MB)")
    parser.add_argument("--max-growth", type=size, default=10**6, help="per hour (1MB)")
    parser.add_argument("--min-reuse", type=ratio, default=0.85)
    parser.add_argument("--window", type=duration, default=None, help="detector history")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--html", default=None, metavar="FILE", help="write an HTML report")
    add_metrics_arguments(parser)
    add_probe_arguments(parser)
    parser.set_defaults(run=run)


def build_config(args: argparse.Namespace) -> SoakConfig:
    width, height = args.resolution
    ladder = args.bitrate_ladder or ()
    if args.adapt_every is not None and not ladder:
        raise UsageError("--adapt-every needs --bitrate-ladder")
    # with a ladder, the stream starts on the rung nearest --bitrate
    start = min(ladder, key=lambda r: abs(r - args.bitrate)) if ladder else args.bitrate
    try:
        encoder = EncoderConfig(args.codec, width, height, args.fps, start, encoder=args.encoder,
                                options=dict(args.encoder_options))  # fmt: skip
        check_explicit(encoder)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    adapt = args.adapt_every if ladder else None
    if ladder and adapt is None:
        adapt = 30.0
    return SoakConfig(
        encoder=encoder, duration_s=args.duration, sample_interval_s=args.sample_interval,
        realtime=args.realtime, ladder_kbps=ladder, adapt_every_s=adapt,
        reconnect_every_s=args.reconnect_every, baseline=args.baseline,
        max_sessions=args.max_sessions, max_idle_bytes=args.max_idle_bytes,
        reference_budget_bytes=args.reference_budget,
        staging_budget_bytes=args.staging_budget, detector_window_s=args.window,
        probe_time_limit_s=args.probe_time_limit, source=args.source, prefetch=args.prefetch,
        criteria=Criteria(max_peak_bytes=args.max_peak, max_growth_bytes_per_hour=args.max_growth,
                          min_reuse_rate=args.min_reuse),
    )  # fmt: skip


def _log_path(args: argparse.Namespace) -> str | None:
    if args.log is not None and args.log_gpu_memory is not None:
        raise UsageError("give --log or --log-gpu-memory, not both")
    if args.log_gpu_memory == "":
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        return f"soak-{args.codec}-{stamp}.jsonl"
    path: str | None = args.log if args.log is not None else args.log_gpu_memory
    return path


def run(args: argparse.Namespace) -> int:
    config = build_config(args)
    if args.html is not None:
        check_writable(args.html, args.force)
    path = _log_path(args)
    log = None
    if path is not None:
        try:
            log = SampleLogWriter(path, source={"command": "soak", "argv": sys.argv[1:]},
                                  config=_config_document(config), force=args.force)  # fmt: skip
        except LogError as exc:
            raise UsageError(str(exc)) from None
    console = Console(stderr=True)
    exporter = None
    try:
        exporter = start_exporter(args)
        result, runner = _run_with_progress(config, log, console, exporter)
    finally:
        if exporter is not None:
            exporter.close()
        if log is not None:
            log.close()
        probes.close()
    result = result.with_log(path)
    if args.html:
        _write_html(args.html, runner, result, args.force)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print_soak(result)
    if result.interrupted:
        return signal_exit_code(result.interrupted)
    return 0 if result.passed else 1


def _run_with_progress(
    config: SoakConfig,
    log: SampleLogWriter | None,
    console: Console,
    exporter: MetricsExporter | None = None,
) -> tuple[SoakResult, SoakRunner]:
    progress = Progress(
        TextColumn("[bold]soak[/]"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console,
        disable=not console.is_terminal,
    )  # fmt: skip
    task = progress.add_task("soak", total=config.duration_s, status="starting")

    def on_sample(runner: SoakRunner, sample: Sample) -> None:
        trend = runner.tracker.trend()
        if exporter is not None:
            suspected = runner.tracker.detector.alarm is not None
            exporter.update(sample, trend, suspected, runner.pipeline.ledger().exporter_counts())
        memory = format_bytes(sample.get(runner.tracker.metric or ""))
        slope = trend.slope_bytes_per_hour
        status = f"{memory}, {'learning' if slope is None else format_rate(slope)}"
        if runner.tracker.alerts:
            status += " [red]LEAK[/]"
        progress.update(task, completed=sample.t, status=status)

    leak = int(os.environ.get(LEAK_SEAM_ENV, "0") or 0)  # test seam, not a user flag
    runner = SoakRunner(config, log, on_sample, on_fault=fault_printer(console),
                        leak_bytes_per_frame=leak)  # fmt: skip
    with on_stop_signals(stop_by_name(runner.stop)), progress:
        try:
            result = runner.run()
        except (EncoderUnavailable, EncoderError) as exc:
            raise UsageError(str(exc)) from None
    if log is not None:
        log.result(result.as_dict())
    return result, runner


def _config_document(config: SoakConfig) -> dict[str, Any]:
    enc = config.encoder
    return {
        "codec": enc.codec, "encoder": enc.encoder, "width": enc.width, "height": enc.height,
        "fps": enc.fps, "bitrate_kbps": enc.bitrate_kbps, "duration_s": config.duration_s,
        "sample_interval_s": config.sample_every_s, "realtime": config.realtime,
        "ladder_kbps": list(config.ladder_kbps), "adapt_every_s": config.adapt_every_s,
        "reconnect_every_s": config.reconnect_every_s, "baseline": config.baseline,
        "source": config.source, "prefetch": config.draws_ahead,
        "encoder_options": dict(enc.options),
    }  # fmt: skip


def _shown(unit: str, value: Any) -> str:
    """A criterion's figure on the screen, in the screen's units (MiB, MiB/h, %)."""
    if value is None:
        return "not measured"
    if unit == "bytes":
        return format_bytes(value)
    if unit == "bytes_per_hour":
        return format_rate(value)
    if unit == "ratio":
        return f"{value:.1%}"
    return str(value)


def shown_threshold(row: CriterionRow) -> str:
    """A criterion's threshold on the screen, in the units of its figure."""
    if row.limit is None:
        return row.threshold
    text = f"{row.relation} {_shown(row.unit, row.limit)}"
    return text + ("; no alert" if row.unit == "bytes_per_hour" else "")


def _mark(row: CriterionRow) -> str:
    if not row.passed:
        return "[red]MISSED[/]"
    return "[green]ok[/]" if row.measured_here else "[dim]not measured[/]"


def print_soak(result: SoakResult) -> None:
    console = Console()
    colour = "green" if result.passed else "red"
    fps = f"{result.fps:.0f} fps" if result.fps else "not measured"
    console.print(
        f"[bold {colour}]{result.verdict.upper()}[/]: {result.codec} {result.resolution} "
        f"on {result.encoder}, {format_duration(result.stream_s)} of stream in "
        f"{format_duration(result.wall_s)} ({fps})"
        + (" [yellow](interrupted)[/]" if result.interrupted else "")
    )
    table = Table(title="criteria", title_justify="left")
    for column in ("criterion", "measured", "threshold", ""):
        table.add_column(column)
    for row in result.criteria:
        table.add_row(row.name, _shown(row.unit, row.measured), shown_threshold(row), _mark(row))
    console.print(table)
    ci = result.growth_ci_bytes_per_hour
    ci_text = f"[{format_rate(ci[0])}, {format_rate(ci[1])}]" if ci else "not measured"
    extra = [
        ("metric", result.metric),
        ("growth 95% CI", ci_text),
        ("leak detector", f"{result.leak_verdict}: {result.leak_reason}"),
        ("sessions created", str(result.sessions_created)),
        ("rate changes in place", f"{result.adapted_in_place} of {result.rate_changes}"),
        ("frames encoded / late", f"{result.frames_encoded} / {result.frames_late}"),
        ("encoder", result.encoder_reason or ""),
    ]
    for key, value in extra:
        console.print(f"  {key}: {value}")
    for kind, fault in result.faults.items():
        first = format_duration(fault["first_t"])
        console.print(f"  [yellow]{kind} fault[/] x{fault['count']} (first at {first}): "
                      f"{escape(fault['message'])}")  # fmt: skip


def _write_html(path: str, runner: SoakRunner, result: SoakResult, force: bool) -> None:
    trend = runner.final_trend or runner.trend()
    t, values = runner.times, runner.values
    title = f"soak {result.codec} {result.resolution}: {result.verdict}"
    samples = list(runner.tracker.samples)
    png = plot_png(t, values, result.metric or "memory", trend, samples, title=title,
                   warmup_s=runner.config.detector().warmup_s)  # fmt: skip
    rows = [(r.name, f"{_shown(r.unit, r.measured)} ({shown_threshold(r)}): "
             f"{'MISSED' if not r.passed else 'ok' if r.measured_here else 'not measured'}")
            for r in result.criteria]  # fmt: skip
    rows += [("leak alert", f"at {format_duration(a.t)} of stream: {a.reason}; likely source "
              f"{a.likely_source}; memory runs out in {format_duration(a.time_to_exhaustion_s)}")
             for a in runner.tracker.alerts]  # fmt: skip
    rows += [(k, str(v)) for k, v in result.as_dict().items() if not isinstance(v, list | dict)]
    write_report(path, html_page(f"vramguard soak: {result.verdict}", png, rows), force)
