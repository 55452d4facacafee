"""A pool of staging buffers with a budget: frames on their way to the encoder.

Buffers are kept per size class (width, height, pixel format) and reused: a lease's `.frame`
is a PyAV VideoFrame over the pooled memory (made once per buffer, no copy per frame). A
lease is a context manager, so a frame dropped mid-encode still returns its buffer. A buffer
released with a `fence` (a callable that says when the encoder has let go of it) is not
handed out again until the fence clears. Idle buffers are freed after `reclaim_after_s`
(checked on each acquire and by `reclaim()`). Over the budget, the pool first purges idle
buffers and only then refuses, with `StagingBudgetExceeded` (a MemoryError); the caller
counts that frame as dropped for memory. An allocation the allocator refuses (cudaMalloc
out of memory) frees the idle buffers and is tried once more before it fails with
`StagingAllocationFailed`, also a MemoryError: that frame is dropped for memory too.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from types import TracebackType
from typing import Any

import av

from vramguard import faults
from vramguard.errors import VramguardError
from vramguard.heap import trim_heap
from vramguard.pools.allocators import Allocator, Buffer, HostAllocator

#: bytes per pixel of the formats a PyAV frame can wrap without a copy
_LAYOUTS: dict[str, float] = {"yuv420p": 1.5, "nv12": 1.5, "rgb24": 3, "bgr24": 3, "gray": 1}


class Pressure(enum.Enum):
    NONE = "none"  # at most half the budget
    MEDIUM = "medium"  # over half
    HIGH = "high"  # over the budget


@dataclass(frozen=True, slots=True)
class StagingStats:
    """A staging pool's bytes by state and its counters (`stats()`). `in_use_bytes` counts
    every buffer not free to reuse: leased ones and, within them, the `fenced_bytes` an
    encoder may still read; do not add the two. `as_dict()` for JSON."""

    in_use_bytes: int  # leased, fenced ones included
    idle_bytes: int
    fenced_bytes: int  # of in_use_bytes: released, waiting for the encoder's fence
    peak_bytes: int
    buffers: int
    allocations: int
    reuses: int
    reclaims: int
    purges: int
    refusals: int
    allocation_failures: int

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class StagingError(VramguardError, RuntimeError):
    """Misuse of the staging pool (a lease released twice)."""


class StagingBudgetExceeded(VramguardError, MemoryError):
    """The budget cannot hold another buffer even after purging idle ones."""


class StagingAllocationFailed(VramguardError, MemoryError):
    """The allocator (host or device) refused a buffer even after idle ones were freed."""


def frame_bytes(width: int, height: int, pix_fmt: str) -> int:
    """Bytes of one frame of a size class; ValueError for sizes or formats we cannot wrap."""
    if pix_fmt not in _LAYOUTS:
        raise ValueError(
            f"unsupported staging format {pix_fmt!r}: use one of {', '.join(_LAYOUTS)}"
        )
    if width < 2 or height < 2 or width > 16384 or height > 16384:
        raise ValueError(f"invalid frame size {width}x{height}")
    if _LAYOUTS[pix_fmt] == 1.5 and (width % 2 or height % 2):
        raise ValueError(f"{width}x{height} is odd: {pix_fmt} needs even width and height")
    return int(width * height * _LAYOUTS[pix_fmt])


def _shape(width: int, height: int, pix_fmt: str) -> tuple[int, ...]:
    if _LAYOUTS[pix_fmt] == 1.5:
        return (height * 3 // 2, width)
    if _LAYOUTS[pix_fmt] == 3:
        return (height, width, 3)
    return (height, width)


@dataclass(eq=False)
class _Slot:
    key: tuple[int, int, str]
    buffer: Buffer
    frame: Any  # av.VideoFrame over buffer.host, or None for device memory
    idle_since: float = 0.0
    fence: Callable[[], bool] | None = None


@dataclass(eq=False)
class StagingLease:
    """One buffer lent out: `.frame` (PyAV) and `.array` (numpy, the same memory)."""

    pool: StagingPool
    _slot: _Slot
    reused: bool
    _done: bool = field(default=False, repr=False)

    @property
    def frame(self) -> Any:
        return self._slot.frame

    @property
    def array(self) -> Any:
        return (
            None
            if self._slot.buffer.host is None
            else self._slot.buffer.host.reshape(_shape(*self._slot.key))
        )

    @property
    def buffer(self) -> Buffer:
        return self._slot.buffer

    def release(self, fence: Callable[[], bool] | None = None) -> None:
        self.pool.release(self, fence)

    def __enter__(self) -> StagingLease:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._done:
            self.pool.release(self)


class StagingPool:
    """Thread-safe pool of staging buffers under `budget_bytes`."""

    def __init__(
        self,
        budget_bytes: int,
        reclaim_after_s: float = 5.0,
        allocator: Allocator | None = None,
        clock: Callable[[], float] = time.monotonic,
        trim_heap_after_free: bool = True,
    ) -> None:
        if budget_bytes <= 0 or reclaim_after_s <= 0:
            raise ValueError("budget_bytes and reclaim_after_s must be positive")
        self.budget_bytes = budget_bytes
        self.reclaim_after_s = reclaim_after_s
        self.allocator: Allocator = allocator or HostAllocator()
        self._clock = clock
        self._trim_heap_after_free = trim_heap_after_free
        self._lock = threading.Lock()
        self._idle: list[_Slot] = []
        self._fenced: list[_Slot] = []
        self._leased: set[int] = set()
        self._in_use_bytes = 0
        self._idle_bytes = 0
        self._fenced_bytes = 0
        self._peak = 0
        self.last_allocation_error: str | None = None
        self._counts = dict.fromkeys(
            ("allocations", "reuses", "reclaims", "purges", "refusals", "allocation_failures"), 0
        )

    # -- leasing --------------------------------------------------------------------------

    def acquire(self, width: int, height: int, pix_fmt: str = "yuv420p") -> StagingLease:
        """A buffer for one frame of this size class: reused when one is free, else new."""
        nbytes = frame_bytes(width, height, pix_fmt)
        key = (width, height, pix_fmt)
        freed: list[_Slot] = []
        try:
            with self._lock:
                self._clear_fences()
                freed += self._reclaim_locked()
                for slot in reversed(self._idle):
                    if slot.key == key:
                        self._idle.remove(slot)
                        self._idle_bytes -= nbytes
                        self._lend(slot, nbytes)
                        self._counts["reuses"] += 1
                        return StagingLease(self, slot, reused=True)
                if self._pressure_locked(nbytes) is Pressure.HIGH:
                    freed += self._purge_locked()
                    if self._pressure_locked(nbytes) is Pressure.HIGH:
                        self._counts["refusals"] += 1
                        raise StagingBudgetExceeded(
                            f"staging budget of {self.budget_bytes} bytes cannot hold another "
                            f"{width}x{height} {pix_fmt} buffer ({nbytes} bytes; "
                            f"{self._in_use_bytes + self._fenced_bytes} bytes in use)"
                        )
                self._in_use_bytes += nbytes  # reserve before allocating outside the lock
                self._counts["allocations"] += 1
        finally:
            self._free(freed)
        try:
            slot = self._allocate(key, nbytes)
        except BaseException:
            with self._lock:
                self._in_use_bytes -= nbytes
            raise
        with self._lock:
            self._in_use_bytes -= nbytes
            self._lend(slot, nbytes)
        return StagingLease(self, slot, reused=False)

    def _allocate(self, key: tuple[int, int, str], nbytes: int) -> _Slot:
        """A new buffer; when the allocator runs out, idle buffers are freed and it is asked
        once more, then StagingAllocationFailed (the caller drops the frame)."""
        try:
            return self._new_slot(key, nbytes)
        except MemoryError as first:
            with self._lock:
                self._counts["allocation_failures"] += 1
                self.last_allocation_error = str(first) or "out of memory"
                purged = self._purge_locked()
            self._free(purged)
            try:
                return self._new_slot(key, nbytes)
            except MemoryError as exc:
                with self._lock:
                    self._counts["allocation_failures"] += 1
                raise StagingAllocationFailed(
                    f"cannot allocate a {key[0]}x{key[1]} {key[2]} staging buffer "
                    f"({nbytes} bytes): {exc or first}"
                ) from exc

    def _new_slot(self, key: tuple[int, int, str], nbytes: int) -> _Slot:
        faults.hit("staging")  # test-only seam: the allocator out of memory
        buffer = self.allocator.allocate(nbytes)
        frame = None
        if buffer.host is not None:
            frame = av.VideoFrame.from_numpy_buffer(
                buffer.host.reshape(_shape(*key)), format=key[2]
            )
        return _Slot(key, buffer, frame)

    def _lend(self, slot: _Slot, nbytes: int) -> None:
        self._leased.add(id(slot))
        self._in_use_bytes += nbytes
        self._peak = max(self._peak, self._accounted())

    def release(self, lease: StagingLease, fence: Callable[[], bool] | None = None) -> None:
        """Give a buffer back. With a `fence`, it stays out of reach until `fence()` is True
        (the encoder may still read it)."""
        slot = lease._slot
        with self._lock:
            if lease._done or id(slot) not in self._leased:
                raise StagingError("this staging lease was already released")
            lease._done = True
            self._leased.discard(id(slot))
            nbytes = slot.buffer.nbytes
            self._in_use_bytes -= nbytes
            if fence is not None and not fence():
                slot.fence = fence
                self._fenced.append(slot)
                self._fenced_bytes += nbytes
                return
            slot.idle_since = self._clock()
            self._idle.append(slot)
            self._idle_bytes += nbytes

    # -- housekeeping ---------------------------------------------------------------------

    def _clear_fences(self) -> None:
        for slot in list(self._fenced):
            if slot.fence is not None and slot.fence():
                self._fenced.remove(slot)
                self._fenced_bytes -= slot.buffer.nbytes
                slot.fence = None
                slot.idle_since = self._clock()
                self._idle.append(slot)
                self._idle_bytes += slot.buffer.nbytes

    def _reclaim_locked(self) -> list[_Slot]:
        now = self._clock()
        stale = [s for s in self._idle if now - s.idle_since >= self.reclaim_after_s]
        for slot in stale:
            self._idle.remove(slot)
            self._idle_bytes -= slot.buffer.nbytes
        self._counts["reclaims"] += len(stale)
        return stale

    def _purge_locked(self) -> list[_Slot]:
        purged, self._idle = self._idle, []
        self._idle_bytes = 0
        self._counts["purges"] += 1
        return purged

    def reclaim(self) -> int:
        """Free buffers idle for `reclaim_after_s` or more; returns how many."""
        with self._lock:
            self._clear_fences()
            stale = self._reclaim_locked()
        self._free(stale)
        return len(stale)

    def purge(self) -> int:
        """Free every idle buffer now (memory pressure), and trim the heap; returns how many."""
        with self._lock:
            self._clear_fences()
            purged = self._purge_locked()
        self._free(purged)
        return len(purged)

    def close(self) -> None:
        """Free every idle and fenced buffer; leased ones are the callers' to release."""
        with self._lock:
            slots = self._idle + self._fenced
            self._idle, self._fenced = [], []
            self._idle_bytes = self._fenced_bytes = 0
        self._free(slots)

    def _free(self, slots: list[_Slot]) -> None:
        for slot in slots:
            slot.frame = None  # the frame wraps the buffer: it goes first
            self.allocator.free(slot.buffer)
        if slots and self._trim_heap_after_free:
            trim_heap()

    # -- reporting ------------------------------------------------------------------------

    def _accounted(self) -> int:
        return self._in_use_bytes + self._idle_bytes + self._fenced_bytes

    def _pressure_locked(self, extra: int = 0) -> Pressure:
        total = self._accounted() + extra
        if total > self.budget_bytes:
            return Pressure.HIGH
        return Pressure.MEDIUM if total > self.budget_bytes / 2 else Pressure.NONE

    def pressure(self, extra_bytes: int = 0) -> Pressure:
        """NONE up to half the budget, MEDIUM over half, HIGH over it (with `extra_bytes`
        more, when asked about an allocation to come)."""
        with self._lock:
            return self._pressure_locked(extra_bytes)

    def stats(self) -> StagingStats:
        """Bytes by state, the peak, and counters since the pool was made."""
        with self._lock:
            return StagingStats(
                in_use_bytes=self._in_use_bytes + self._fenced_bytes,
                idle_bytes=self._idle_bytes,
                fenced_bytes=self._fenced_bytes,
                peak_bytes=self._peak,
                buffers=len(self._leased) + len(self._idle) + len(self._fenced),
                **self._counts,
            )
