"""Probe readings on a thread of their own, under a time limit.

A probe can stall: NVML waits on a hung driver, /proc/PID/smaps_rollup walks a large address
space, a network file system stops answering. The encoder must not wait with it. A Sampler
runs one reading at a time on a worker thread: `request()` starts one and returns at once
(False when the last is still running: that sample is skipped), `poll()` hands back the
finished ones; `read()` waits for one, at most the time limit. A reading past the time limit
is reported once as hung (`SampleResult.error`); the worker cannot be killed, so no new
reading starts until it returns, and its late result is dropped.

Teardown: `close()` tells the worker to stop and joins it for at most `join_s`; a worker
still stuck in a probe is a daemon thread, abandoned (the process can exit) and said so by
`close()`'s return value.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from vramguard.probes import NoSuchProcess, Reading

C = TypeVar("C")
DEFAULT_TIME_LIMIT_S = 10.0


@dataclass(frozen=True, slots=True)
class SampleResult(Generic[C]):
    """One request's outcome: a reading, or why there is none."""

    context: C
    reading: Reading | None
    error: str | None = None
    gone: bool = False  # the process does not exist any more
    hung: bool = False


class Sampler(Generic[C]):
    """Runs `read()` on a worker thread, one call at a time, each under `time_limit_s`."""

    def __init__(
        self,
        read: Callable[[], Reading],
        time_limit_s: float = DEFAULT_TIME_LIMIT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if time_limit_s <= 0:
            raise ValueError("time_limit_s must be positive")
        self._read = read
        self.time_limit_s = time_limit_s
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._has_pending = False  # a request the worker has not picked up yet
        self._busy_since: float | None = None  # when the reading in flight was asked for
        self._busy_context: Any = None  # and for what
        self._hung_reported = False
        self._done: deque[SampleResult[C]] = deque()
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="vramguard-sampler", daemon=True)
        self._worker.start()

    # -- the caller's side ----------------------------------------------------------------

    def request(self, context: C) -> bool:
        """Start a reading for `context`; False (skipped) when one is still in flight."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the sampler is closed")
            if self._busy_since is not None:  # asked for and not finished yet
                return False
            self._has_pending = True
            self._busy_since, self._busy_context = self._clock(), context
            self._wake.notify_all()
            return True

    def poll(self) -> list[SampleResult[C]]:
        """Finished readings, oldest first, and a hung one (once) when past the limit."""
        if not self._done and self._busy_since is None:
            return []
        with self._lock:
            self._check_hung_locked()
            done = list(self._done)
            self._done.clear()
            return done

    def wait(self, context: C) -> SampleResult[C]:
        """Request and wait for one reading, at most the time limit (blocking)."""
        deadline = self._clock() + self.time_limit_s
        if not self.request(context):
            with self._lock:
                hung = self._check_hung_locked()
                if hung is not None:
                    self._done.remove(hung)
                    return SampleResult(context, None, hung.error, hung=True)
            return SampleResult(context, None, "the previous reading has not finished", hung=True)
        while True:
            with self._lock:
                for result in self._done:
                    if result.context is context:
                        self._done.remove(result)
                        return result
                remaining = deadline - self._clock()
                if remaining <= 0:
                    hung = self._check_hung_locked(force=True)
                    assert hung is not None
                    self._done.remove(hung)
                    return hung
                self._wake.wait(min(remaining, 0.05))

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no reading is in flight (a hung one included); False on timeout."""
        deadline = self._clock() + timeout_s
        with self._lock:
            while self._busy_since is not None:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return False
                self._wake.wait(min(remaining, 0.05))
        return True

    def settle(self) -> list[SampleResult[C]]:
        """Wait for the reading in flight (at most the rest of its time limit), then poll."""
        with self._lock:
            while self._busy_since is not None and not self._hung_reported:
                remaining = self._busy_since + self.time_limit_s - self._clock()
                if remaining <= 0:
                    break
                self._wake.wait(min(remaining, 0.05))
        return self.poll()

    def close(self, join_s: float = 1.0) -> bool:
        """Stop the worker; True when it ended, False when it is stuck in a probe (left as a
        daemon thread). Idempotent."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        self._worker.join(join_s)
        return not self._worker.is_alive()

    def _check_hung_locked(self, force: bool = False) -> SampleResult[C] | None:
        since = self._busy_since
        if since is None or self._hung_reported:
            return None
        elapsed = self._clock() - since
        if not force and elapsed < self.time_limit_s:
            return None
        self._hung_reported = True
        result: SampleResult[C] = SampleResult(
            self._busy_context,
            None,
            f"a probe reading took longer than {self.time_limit_s:g} s; sampling waits for it",
            hung=True,
        )
        self._done.append(result)
        return result

    # -- the worker -----------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._has_pending and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                context, self._has_pending = self._busy_context, False
            result = self._one(context)
            with self._lock:
                late = self._hung_reported
                self._busy_since, self._busy_context, self._hung_reported = None, None, False
                if not late:  # a result already reported as hung is dropped
                    self._done.append(result)
                self._wake.notify_all()

    def _one(self, context: C) -> SampleResult[C]:
        try:
            return SampleResult(context, self._read())
        except NoSuchProcess as exc:
            return SampleResult(context, None, str(exc) or "the process is gone", gone=True)
        except Exception as exc:  # a probe failing must not end sampling
            return SampleResult(context, None, f"{type(exc).__name__}: {exc}")
