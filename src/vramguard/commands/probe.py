"""`vramguard probe`: what can be measured here, and one reading of a process."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from rich.console import Console
from rich.table import Table

from vramguard import probes
from vramguard.commands.common import pid_argument
from vramguard.errors import UsageError
from vramguard.units import format_bytes


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "probe",
        help="list the memory probes and read a process",
        description="List every memory probe, whether it works here (and why not), "
        "and one reading of a process.",
        epilog="exit codes: 0 read (a probe that is not available here is a reason, not "
        "an error), 2 bad input or no such process",
    )
    parser.add_argument(
        "--pid", type=pid_argument, default=None, help="process to read (default: this)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON (sizes in bytes)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    pid = args.pid if args.pid is not None else os.getpid()
    try:
        statuses = probes.available()
        reading = probes.read(pid)
    except probes.NoSuchProcess as exc:
        raise UsageError(str(exc)) from None
    finally:
        probes.close()
    if args.json:
        document = {
            "pid": pid,
            "probes": [
                {"name": s.name, "available": s.available, "reason": s.reason, "detail": s.detail}
                for s in statuses
            ],
            "reading": reading.as_dict(),
        }
        print(json.dumps(document, indent=2))
        return 0
    _print_tables(statuses, reading)
    return 0


def _print_tables(statuses: list[probes.ProbeStatus], reading: probes.Reading) -> None:
    console = Console()
    table = Table(title="Probes", title_justify="left")
    table.add_column("probe")
    table.add_column("status")
    table.add_column("detail")
    for status in statuses:
        state = "[green]available[/]" if status.available else "[yellow]unavailable[/]"
        table.add_row(status.name, state, status.detail or status.reason or "")
    console.print(table)
    table = Table(title=f"Reading of pid {reading.pid}", title_justify="left")
    table.add_column("field")
    table.add_column("value", justify="right")
    table.add_column("source / why not")
    idle = {status.name for status in statuses if not status.available}
    for name, value in reading.values().items():
        if value is None:
            why = _reasons_of_available_probes(reading.unavailable.get(name, ""), idle)
            table.add_row(name, "n/a", f"[dim]{why}[/]")
        else:
            shown = format_bytes(value) if name.endswith("_bytes") else f"{value:,}"
            table.add_row(name, shown, reading.sources.get(name, ""))
    console.print(table)


def _reasons_of_available_probes(reasons: str, idle: set[str]) -> str:
    """Drop the reasons of probes that do not work here at all: the Probes table says why."""
    kept = [part for part in reasons.split("; ") if part.partition(":")[0] not in idle]
    return "; ".join(kept) if kept else "no probe for this works here (see Probes)"
