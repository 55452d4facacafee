"""`vramguard churn`: create, use and destroy sessions N times; memory must come back."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vramguard import probes
from vramguard.churn import ChurnConfig, ChurnRunner, valgrind_churn
from vramguard.commands.common import (
    add_log_arguments,
    argument_type,
    fault_printer,
    on_stop_signals,
    open_log,
    positive_int,
    signal_exit_code,
    stop_by_name,
)
from vramguard.encode import CODECS, EncoderConfig, EncoderError, EncoderUnavailable
from vramguard.encode.backends import check_explicit
from vramguard.errors import UsageError
from vramguard.soak import LEAK_SEAM_ENV
from vramguard.units import format_bytes, parse_resolution


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "churn",
        help="open, use and close sessions N times: memory must come back",
        description="Each cycle: open a session, encode, drain and close it; reconnect a client "
        "through the pool; change bitrate through the pool. Sample after each cycle and judge "
        "the growth per cycle of RSS, heap, descriptors, threads and GPU memory.",
        epilog="exit codes: 0 stable, 1 leak (or an encoder failed), 2 bad input or usage; "
        "128 + the signal when one stopped it",
    )
    parser.add_argument("--codec", default="h264", choices=CODECS)
    parser.add_argument("--encoder", default="auto")
    parser.add_argument("--cycles", type=positive_int, default=30)
    parser.add_argument("--frames", type=positive_int, default=10, help="frames per step")
    parser.add_argument("--resolution", type=argument_type(parse_resolution), default=(640, 360))
    parser.add_argument("--bitrate", type=positive_int, default=2000)
    parser.add_argument("--json", action="store_true")
    add_log_arguments(parser)
    parser.add_argument("--valgrind", action="store_true",
                        help="run a short churn under valgrind memcheck instead")  # fmt: skip
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    width, height = args.resolution
    try:
        encoder = EncoderConfig(args.codec, width, height, 30, args.bitrate, encoder=args.encoder)
        check_explicit(encoder)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.valgrind:
        return _valgrind(args)
    if args.cycles < 4:
        raise UsageError("--cycles must be at least 4 (a few to warm up, the rest to judge)")
    config = ChurnConfig(encoder, args.cycles, args.frames)
    log = open_log(args, source={"command": "churn", "argv": sys.argv[1:]},
                   config={"codec": args.codec, "cycles": args.cycles, "frames": args.frames,
                           "resolution": f"{width}x{height}"})  # fmt: skip
    try:
        leak = int(os.environ.get(LEAK_SEAM_ENV, "0") or 0)  # test seam, not a user flag
        runner = ChurnRunner(config, log=log, on_fault=fault_printer(Console(stderr=True)),
                             leak_bytes_per_frame=leak)  # fmt: skip
        result = _run_stoppable(runner)
        if log is not None:
            log.result(result)
    finally:
        if log is not None:
            log.close()
        probes.close()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)
    if result["interrupted"]:
        return signal_exit_code(result["interrupted"])
    return 1 if result["verdict"] == "leak" or result["failure"] else 0


def _run_stoppable(runner: ChurnRunner) -> dict[str, Any]:
    """The churn, with SIGINT and SIGTERM ending it after the cycle in progress."""
    with on_stop_signals(stop_by_name(runner.stop)):
        try:
            return runner.run()
        except (EncoderUnavailable, EncoderError) as exc:
            raise UsageError(str(exc)) from None


def _valgrind(args: argparse.Namespace) -> int:
    try:
        report = valgrind_churn(args.codec, cycles=max(4, min(args.cycles, 5)), resolution="64x64")
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        console = Console()
        console.print(f"valgrind memcheck: {report['definitely_lost_bytes']} bytes definitely lost "
                      f"in {report['records']} records")  # fmt: skip
        for record in report["encoder_records"]:
            console.print(f"  {record['bytes']} bytes in {', '.join(record['libraries'])}")
    if not report["completed"] or report["returncode"] not in (0, 1):
        raise UsageError(f"the churn under valgrind did not finish (exit {report['returncode']})")
    return 1 if report["encoder_lost_bytes"] > 0 else 0


def _print(result: dict[str, Any]) -> None:
    console = Console()
    colour = {"leak": "red", "stable": "green"}.get(result["verdict"], "yellow")
    console.print(f"[bold {colour}]{result['verdict']}[/]: {result['cycles']} cycles of "
                  f"{result['codec']} on {result['encoder']} (first {result['warmup_cycles']} "
                  "to warm up)" + (f" [yellow](interrupted by {result['interrupted']})[/]"
                                   if result["interrupted"] else ""))  # fmt: skip
    if result["failure"]:
        console.print(f"[red]stopped early[/]: {escape(result['failure'])}")
    if result["log_error"]:
        console.print(f"[yellow]log: {escape(result['log_error'])}[/]")
    table = Table()
    for column in ("metric", "first", "last", "growth per cycle (95% CI)", "allowed", ""):
        table.add_column(column)
    for name, m in result["metrics"].items():
        size = name.endswith("_bytes")

        def shown(v: float, size: bool = size) -> str:
            return format_bytes(v) if size else f"{v:.2f}"

        def small(v: float, size: bool = size) -> str:
            return f"{v / 1024:+.1f} KiB" if size else f"{v:+.2f}"

        low, high = m["ci"]
        table.add_row(
            name, shown(m["first"]), shown(m["last"]),
            f"{small(m['growth_per_cycle'])} ({small(low)}, {small(high)})",
            small(m["allowance_per_cycle"]), "[red]LEAK[/]" if m["leak"] else "ok",
        )  # fmt: skip
    console.print(table)
