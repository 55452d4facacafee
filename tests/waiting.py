"""Waiting on a child process of a test: for its log to grow, or for it to say its pid."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def wait_for_lines(path: Path, lines: int, proc: subprocess.Popen[str]) -> None:
    """Until `path` holds `lines` whole lines; fails if `proc` ends first or 60 s pass."""
    deadline = time.monotonic() + 60
    while not path.exists() or path.read_text().count("\n") < lines:
        assert time.monotonic() < deadline and proc.poll() is None, "never got going"
        time.sleep(0.05)


def wait_for_pid(marker: Path, proc: subprocess.Popen[str]) -> int:
    """The pid a child wrote to `marker`; fails if `proc` ends first or 30 s pass."""
    deadline = time.monotonic() + 30
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline and proc.poll() is None, "the child never started"
        time.sleep(0.05)
    return int(marker.read_text())
