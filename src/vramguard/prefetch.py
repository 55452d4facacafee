"""Frames drawn ahead on a thread of their own, into staging buffers, while the encoder works.

The encoder's `avcodec_send_frame` runs without the GIL, so a source drawing the next frame
(a numpy fill, or libavfilter's testsrc2 at 1.3 ms a 1080p frame) overlaps it instead of
adding to it. At most `depth` frames wait, each in its own staging lease; the consumer takes
them in order with `next()` and releases each lease (with the encoder's fence) as usual.

A staging allocation that fails is handed over in the frame's place (`Drawn.error`), so the
consumer drops that frame for memory, as it would have drawing it itself. Teardown,
`close()`: the drawing thread is told to stop and joined; every lease drawn and not taken is
released. The source is the caller's to close, after.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

from vramguard.pools.staging import StagingLease, StagingPool
from vramguard.sources import Source


@dataclass(frozen=True, slots=True)
class Drawn:
    """Frame `index`, drawn into `lease`; or, when no buffer could be had, `error`."""

    index: int
    lease: StagingLease | None
    error: MemoryError | None = None


class Prefetcher:
    def __init__(
        self,
        source: Source,
        staging: StagingPool,
        frames: range,
        depth: int = 2,
    ) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._source = source
        self._staging = staging
        self._frames = frames
        self._ready: queue.Queue[Drawn | BaseException] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._draw, name="vramguard-source", daemon=True)
        self._thread.start()

    def next(self, timeout: float = 60.0) -> Drawn:
        """The next frame, in order; re-raises what broke the drawing thread."""
        item = self._ready.get(timeout=timeout)
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Stop drawing, release every frame drawn and not taken, join the thread."""
        self._stop.set()
        while self._thread.is_alive():
            self._release_waiting()
            self._thread.join(timeout=0.05)
        self._release_waiting()

    def _release_waiting(self) -> None:
        while True:
            try:
                item = self._ready.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Drawn) and item.lease is not None:
                item.lease.release()

    def _draw(self) -> None:
        width, height = self._source.width, self._source.height
        try:
            for index in self._frames:
                if self._stop.is_set():
                    return
                try:
                    lease = self._staging.acquire(width, height)
                except MemoryError as exc:  # over the budget, or the allocator refused
                    self._hand_over(Drawn(index, None, exc))
                    continue
                try:
                    self._source.draw(lease.array, index)
                except BaseException:
                    lease.release()
                    raise
                if not self._hand_over(Drawn(index, lease)):
                    lease.release()
                    return
        except BaseException as exc:  # the consumer hears of it at its next frame
            self._hand_over(exc)

    def _hand_over(self, item: Drawn | BaseException) -> bool:
        """Queue an item, waiting for room; False when told to stop first."""
        while not self._stop.is_set():
            try:
                self._ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False
