"""Argument types and helpers the subcommands share: every bad value is one clear line."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vramguard.errors import UsageError
from vramguard.exporter import MetricsExporter
from vramguard.report import summary_rows, write_new
from vramguard.samplelog import LogError, SampleLogWriter
from vramguard.sampler import DEFAULT_TIME_LIMIT_S
from vramguard.trend import DetectorConfig
from vramguard.units import format_duration, parse_duration, parse_size

T = TypeVar("T")


def argument_type(parser: Callable[[str], T]) -> Callable[[str], T]:
    """Wrap a parser that raises ValueError so argparse reports its message as is."""

    def parse(text: str) -> T:
        try:
            return parser(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = parser.__name__
    return parse


duration = argument_type(parse_duration)
size = argument_type(parse_size)


def add_detector_arguments(parser: Any) -> None:
    parser.add_argument(
        "--window",
        type=duration,
        default=None,
        metavar="DURATION",
        help="the detector's history (default 8h); shorter judges short runs, "
        "every detector duration scaled alike",
    )
    parser.add_argument(
        "--budget",
        type=size,
        default=None,
        metavar="SIZE",
        help="memory budget for time-to-exhaustion (default: the device total)",
    )


def detector_config(args: argparse.Namespace, duration_s: float | None = None) -> DetectorConfig:
    """--window when given; else the run's own time scale once its length is known (a
    third of it, at most 8 h); else the default 8 h view (live alerts of a run under way)."""
    base = DetectorConfig()
    if args.window is not None:
        return base.scaled(args.window)
    if duration_s is not None:
        return base.for_duration(duration_s)
    return base


def time_scale(args: argparse.Namespace, config: DetectorConfig) -> dict[str, Any]:
    """Which scale a verdict was judged on, for the result and the screen."""
    chosen = "--window" if args.window is not None else "the run's own length"
    return {"window_s": config.history_s, "warmup_s": config.warmup_s, "window_from": chosen}


def warn(message: str) -> None:
    """One warning line on stderr, as every command says its warnings."""
    print(f"vramguard: warning: {message}", file=sys.stderr)


def add_noise_prior_argument(parser: Any) -> None:
    """--noise-from LOG: an earlier run's noise for a run too young to have shown its own."""
    parser.add_argument(
        "--noise-from", default=None, metavar="LOG",
        help="an earlier log of the same process: its noise stands in for the history a "
        "young run has not shown yet (a slow wander its first hours cannot tell from a leak)",
    )  # fmt: skip


def add_load_arguments(parser: Any, live: bool = False) -> None:
    """--load FIELD (and for a live process, a file or command that says the load)."""
    parser.add_argument(
        "--load", default=None, metavar="FIELD",
        help="a load signal (sessions, clients) the memory follows: memory that load "
        "explains is not a leak, and memory per unit of load growing is"
        + ("" if live else " (default: sessions_active when the log has it)"),
    )  # fmt: skip
    if live:
        parser.add_argument(
            "--load-file",
            default=None,
            metavar="PATH",
            help="read the load (a number) from this file at each sample",
        )
        parser.add_argument(
            "--load-command",
            default=None,
            metavar="CMD",
            help="run CMD (no shell) at each sample: its output is the load",
        )


EXIT_CODES = (
    "exit codes: 0 stable (or too short to judge), 1 leak (or a criterion missed), "
    "2 bad input or usage"
)


def add_log_arguments(parser: Any) -> None:
    parser.add_argument("--log", default=None, metavar="FILE", help="write a JSONL sample log")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --log")


def open_log(
    args: argparse.Namespace, source: dict[str, Any], config: dict[str, Any]
) -> SampleLogWriter | None:
    """The --log writer, or None; bad paths and existing files are one clear line."""
    if args.log is None:
        return None
    try:
        return SampleLogWriter(args.log, source=source, config=config, force=args.force)
    except LogError as exc:
        raise UsageError(str(exc)) from None


def print_result(result: dict[str, Any]) -> None:
    """A verdict for the screen: one coloured line, then a table in MB and hours."""
    console = Console()
    colour = {"leak": "red", "stable": "green"}.get(result["verdict"], "yellow")
    console.print(f"[bold {colour}]{result['verdict']}[/]: {escape(str(result['reason']))}")
    scale = result.get("time_scale")
    if isinstance(scale, dict):
        console.print(
            f"judged on a {format_duration(scale['window_s'])} window after a "
            f"{format_duration(scale['warmup_s'])} warm-up ({scale['window_from']}; "
            "--window changes it)"
        )
    prior = result.get("noise_prior")
    if isinstance(prior, dict):
        console.print(
            f"noise learned from an earlier run of {format_duration(prior['earlier_duration_s'])}"
            f" ({escape(str(prior['from']))}, {prior['noise_buckets']} buckets)"
        )
    table = Table(show_header=False)
    for label, shown in summary_rows(result):
        if label not in ("verdict", "reason"):
            table.add_row(label, escape(shown))
    console.print(table)


def bounded(kind: type[int] | type[float], what: str, low: float, high: float) -> Any:
    """An argparse type: a number of `kind` from `low` to `high`, else one clear line."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"invalid {what} {text!r}: use {_plain(low)} to {_plain(high)}"
            )
        return value

    return parse


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


positive_int = bounded(int, "number", 1, 10**6)
pid_argument = bounded(int, "pid", 1, 2**31 - 1)
ratio = bounded(float, "ratio", 0.0, 1.0)


def add_metrics_arguments(parser: Any) -> None:
    parser.add_argument("--metrics-port", type=bounded(int, "port", 0, 65535), metavar="PORT",
                        help="serve Prometheus metrics on this port (0: any free one)")  # fmt: skip
    parser.add_argument("--metrics-host", default="127.0.0.1", metavar="ADDRESS",
                        help="address to bind the metrics server (default 127.0.0.1)")  # fmt: skip


@contextlib.contextmanager
def on_stop_signals(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """`handler` for SIGINT and SIGTERM while the block runs; the previous handlers after."""
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def stop_by_name(stop: Callable[[str], None]) -> Callable[[int, FrameType | None], None]:
    """A signal handler that calls `stop("SIGTERM")` (or the signal's own name)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        stop(signal.Signals(signum).name)

    return handler


def signal_exit_code(name: str) -> int:
    """128 + the signal's number: the shell's code for a run a signal ended."""
    return 128 + signal.Signals[name].value


def add_probe_arguments(parser: Any) -> None:
    parser.add_argument(
        "--probe-time-limit", type=duration, default=DEFAULT_TIME_LIMIT_S, metavar="DURATION",
        help="wall time a probe reading may take before it is reported as hung and its sample "
        "skipped (default 10s); encoding and sampling never wait longer",
    )  # fmt: skip


def fault_printer(console: Console) -> Callable[[str, str], None]:
    """An on_fault callback: one yellow line on stderr for each kind of fault, once."""

    def show(kind: str, message: str) -> None:
        console.print(f"[yellow]vramguard: {kind} fault[/]: {escape(message)} (reported once)")

    return show


E = TypeVar("E", bound=MetricsExporter)


def start_exporter(
    args: argparse.Namespace,
    kind: Callable[[], E] = MetricsExporter,  # type: ignore[assignment]
) -> E | None:
    """The metrics server asked for (a `kind` of exporter), started; one clear line when it
    cannot bind."""
    if args.metrics_port is None:
        return None
    exporter = kind()
    try:
        port = exporter.start(args.metrics_port, args.metrics_host)
    except OSError as exc:
        raise UsageError(
            f"cannot serve metrics on {args.metrics_host}:{args.metrics_port}: {exc.strerror}"
        ) from None
    print(f"vramguard: metrics on http://{args.metrics_host}:{port}/metrics", file=sys.stderr)
    return exporter


def check_writable(path: str, force: bool) -> None:
    """Refuse, before any work, an output path in a missing folder or one that exists
    without --force: a run must never end by losing its report or an older one."""
    target = Path(path)
    if not target.parent.is_dir():
        raise UsageError(f"cannot write {target}: folder {target.parent} does not exist")
    if target.exists() and not force:
        raise UsageError(f"{target} exists: use --force to overwrite it (nothing was run)")


def write_report(path: str, data: bytes | str, force: bool) -> None:
    """Write a report or plot the user asked for, and say where it went (on stderr)."""
    write_new(path, data, force=force)
    print(f"vramguard: wrote {path}", file=sys.stderr)
