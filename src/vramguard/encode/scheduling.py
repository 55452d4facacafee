"""Keep an encoder from raising this process's threads to real-time priority.

SVT-AV1 (libsvtav1 in PyAV 18's wheels), in a process running as root, switches the thread
that opens a session, and every worker thread it starts, to SCHED_FIFO priority 99
(measured: after one 320x240 session the Python main thread stays FIFO 99 past close). A
busy loop in such a process then holds a core against everything else on the machine,
which the kernel leaves 5% of it. `keep_scheduling()` puts the calling thread back as it
was and turns the threads started meanwhile from real time to SCHED_OTHER, as they are when
SVT-AV1 runs as a normal user. Linux only; elsewhere there is nothing to undo.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


def _threads() -> set[int]:
    try:
        return {int(name) for name in os.listdir("/proc/self/task")}
    except OSError:
        return set()


@contextlib.contextmanager
def keep_scheduling() -> Iterator[None]:
    """Undo, on the way out, any real-time scheduling the code inside gave this thread or
    the threads it started."""
    if not sys.platform.startswith("linux"):
        yield
        return
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    before = _threads()
    try:
        yield
    finally:
        realtime = {os.SCHED_FIFO, os.SCHED_RR}
        with contextlib.suppress(OSError):
            if (os.sched_getscheduler(0), os.sched_getparam(0)) != (policy, param):
                os.sched_setscheduler(0, policy, param)
        for tid in _threads() - before:
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                if os.sched_getscheduler(tid) in realtime:
                    os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
