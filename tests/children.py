"""Real child processes for the agent's tests: each holds host memory flat or grows it at a
known rate, and carries a marker in its command line for `--match`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

_CHILD = """
import sys, time
step = int(sys.argv[2])  # bytes added every 50 ms (0: flat)
held = []
while True:
    time.sleep(0.05)
    if step:
        held.append(b"\\1" * step)
"""


def marker() -> str:
    """A marker no other process on the machine carries."""
    return f"vgchild-{uuid.uuid4().hex[:10]}"


@contextmanager
def children(mark: str, *steps: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """One child per step (bytes per 50 ms; 0 holds flat), each with `mark` in its command
    line; terminated and reaped at the end, in the order started."""
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, mark, str(step)]) for step in steps]
    try:
        for proc in procs:
            _wait_running(proc)
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def _wait_running(proc: subprocess.Popen[bytes]) -> None:
    """Until the child's interpreter is up (its loop started: RSS past 5 MB), at most 20 s."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/statm") as statm:
                if int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") > 5 << 20:
                    time.sleep(0.1)  # past the imports, into the loop
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"child {proc.pid} never got going")


def pattern(mark: str) -> str:
    """A --match pattern for `mark` that does not match itself (the agent's own command
    line, or a test runner's, carries the pattern, not the marker)."""
    return mark[:-1] + f"[{mark[-1]}]"
