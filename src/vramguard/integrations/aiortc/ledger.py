"""What the aiortc encoders of a process hold and did, summed: the counters a server logs,
and the fields it gives vramguard's tracker beside the memory the probes measure.

Encoders report to a ledger from aiortc's encoding threads, so every update takes its lock.
A session's memory is counted at `warm_session_bytes(config)` (measured for libx264 here;
see `vramguard.encode.costs`): an estimate beside the process's measured RSS and GPU memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from vramguard import probes
from vramguard.encode import EncoderConfig, warm_session_bytes
from vramguard.tracker import LeakAlert, MemoryTracker, Sample


@dataclass(slots=True)
class EncoderCounters:
    """Counts of one encoder, or of every encoder of a ledger."""

    sessions_opened: int = 0
    sessions_closed: int = 0
    #: sessions opened because the frame size changed (the first session is not one)
    size_changes: int = 0
    #: rate changes the open session took in place (no new session, no keyframe for libx264)
    rate_changes_in_place: int = 0
    #: rate changes that needed a new session (encoders that cannot change rate while open)
    rate_changes_reopened: int = 0
    keyframes: int = 0
    #: keyframes aiortc asked for (a PLI or FIR from the receiver)
    keyframes_asked: int = 0
    #: keyframes out of the first frame after an in-place rate change nobody asked for
    keyframes_after_rate_change: int = 0
    frames_encoded: int = 0
    bytes_out: int = 0

    def add(self, **deltas: int) -> None:
        for name, value in deltas.items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LedgerStats:
    """What a ledger's encoders hold now, and their counters summed so far."""

    encoders_active: int
    sessions_active: int
    #: the open sessions, each at `warm_session_bytes(config)`: an estimate, not a reading
    session_bytes: int
    totals: EncoderCounters

    def as_dict(self) -> dict[str, int]:
        """Flat, for a log line or JSON."""
        return {
            "encoders_active": self.encoders_active,
            "sessions_active": self.sessions_active,
            "session_bytes": self.session_bytes,
            **self.totals.as_dict(),
        }


class EncoderLedger:
    """The encoders of one `install()` or `use()` (or of your own making), summed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._totals = EncoderCounters()
        self._session_bytes: dict[int, int] = {}  # id of an open session -> its estimate
        self._encoders_active = 0
        self._clock = clock
        self._started = clock()

    def encoder_opened(self) -> None:
        with self._lock:
            self._encoders_active += 1

    def encoder_closed(self) -> None:
        with self._lock:
            self._encoders_active -= 1

    def session_opened(self, key: int, config: EncoderConfig) -> None:
        with self._lock:
            self._session_bytes[key] = warm_session_bytes(config)

    def session_closed(self, key: int) -> None:
        with self._lock:
            self._session_bytes.pop(key, None)

    def count(self, **deltas: int) -> None:
        with self._lock:
            self._totals.add(**deltas)

    def stats(self) -> LedgerStats:
        """Encoders and sessions open now, the estimated bytes those sessions hold, and
        every counter summed over all encoders so far (a copy: it does not change)."""
        with self._lock:
            return LedgerStats(
                encoders_active=self._encoders_active,
                sessions_active=len(self._session_bytes),
                session_bytes=sum(self._session_bytes.values()),
                totals=replace(self._totals),
            )

    def sample(self, pid: int | None = None) -> Sample:
        """A reading of this process (or `pid`) with what the encoders hold, for a tracker
        or a sample log (`t` is seconds since the ledger was made)."""
        reading = probes.read(pid)
        stats = self.stats()
        since = self._clock() - self._started
        return Sample.from_reading(
            reading,
            t=since,
            wall_s=since,  # seconds since the start, as docs/log-format.md has it
            sessions_active=stats.sessions_active,
            frames_encoded=stats.totals.frames_encoded,
        )

    def track(self, tracker: MemoryTracker, pid: int | None = None) -> LeakAlert | None:
        """Give the tracker a sample now; its alert, if the detector starts alarming."""
        return tracker.add(self.sample(pid))
