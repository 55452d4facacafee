"""Faults reported once per kind, and a run's log lines written so that a log that cannot be
written is one more fault, never the end of the run.

The first fault of each kind is a `fault` event in the log (`{"t", "event": "fault", "kind",
"message"}`) and a call to `on_fault(kind, message)`; later ones of that kind are counted.
`faults` is what a result reports: kind -> count, first time, first message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vramguard.samplelog import LogError, SampleLogWriter


class FaultLog:
    def __init__(
        self,
        log: SampleLogWriter | None = None,
        on_fault: Callable[[str, str], None] | None = None,
    ) -> None:
        self.log = log
        self.on_fault = on_fault
        self.faults: dict[str, dict[str, Any]] = {}
        self.last: dict[str, str] = {}  # kind -> the latest message

    def fault(self, kind: str, message: str, t: float) -> None:
        """Report a fault: the first of its kind is logged and heard; the rest counted."""
        self.last[kind] = message
        entry = self.faults.get(kind)
        if entry is not None:
            entry["count"] += 1
            return
        self.faults[kind] = {"count": 1, "first_t": t, "message": message}
        self.write({"t": t, "event": "fault", "kind": kind, "message": message}, t)
        if self.on_fault is not None:
            self.on_fault(kind, message)

    def write(self, record: dict[str, Any], t: float) -> None:
        """One line to the log, if there is one; a failed write becomes the fault `log`."""
        if self.log is None:
            return
        try:
            self.log.write(record)
        except LogError as exc:
            self.fault("log", str(exc), t)
