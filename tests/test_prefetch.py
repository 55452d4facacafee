"""Frames drawn ahead: in order, each in its own buffer, every lease back after close()."""

from __future__ import annotations

from typing import Any

import pytest

from vramguard.pools.staging import StagingBudgetExceeded, StagingPool, frame_bytes
from vramguard.prefetch import Prefetcher
from vramguard.sources import SyntheticSource


class Numbered:
    """Fills frame `index` with the value index % 256, so order can be read back."""

    width, height = 64, 64

    def draw(self, target: Any, index: int) -> None:
        target[:] = index % 256

    def close(self) -> None:
        pass


def test_frames_come_in_order_each_drawn_in_its_own_buffer() -> None:
    staging = StagingPool(8 * frame_bytes(64, 64, "yuv420p"), trim_heap_after_free=False)
    ahead = Prefetcher(Numbered(), staging, range(300))
    try:
        for index in range(300):
            drawn = ahead.next()
            assert drawn.index == index and drawn.lease is not None
            assert int(drawn.lease.array[0, 0]) == int(drawn.lease.array[-1, -1]) == index % 256
            drawn.lease.release()
    finally:
        ahead.close()
    assert staging.stats().in_use_bytes == 0
    assert staging.stats().buffers <= 4  # depth 2, reused: never a buffer per frame
    staging.close()


def test_close_releases_every_frame_drawn_and_not_taken() -> None:
    staging = StagingPool(8 * frame_bytes(64, 64, "yuv420p"), trim_heap_after_free=False)
    ahead = Prefetcher(SyntheticSource(64, 64), staging, range(10_000))
    taken = ahead.next()
    assert taken.lease is not None
    ahead.close()  # with frames waiting and the thread blocked on a full queue
    assert staging.stats().in_use_bytes == taken.lease.buffer.nbytes
    taken.lease.release()
    assert staging.stats().in_use_bytes == 0
    staging.close()


def test_a_frame_without_a_buffer_is_handed_over_as_its_error() -> None:
    staging = StagingPool(frame_bytes(64, 64, "yuv420p"), trim_heap_after_free=False)
    ahead = Prefetcher(Numbered(), staging, range(2))
    try:
        first = ahead.next()
        second = ahead.next()  # the budget holds one frame, and the first still has it
        assert first.lease is not None and second.lease is None
        assert isinstance(second.error, StagingBudgetExceeded) and second.index == 1
        first.lease.release()
    finally:
        ahead.close()
    staging.close()


def test_a_source_that_breaks_is_raised_to_the_consumer() -> None:
    class Broken(Numbered):
        def draw(self, target: Any, index: int) -> None:
            if index == 2:
                raise OSError("the camera went away")
            super().draw(target, index)

    staging = StagingPool(8 * frame_bytes(64, 64, "yuv420p"), trim_heap_after_free=False)
    ahead = Prefetcher(Broken(), staging, range(5))
    try:
        for _ in range(2):
            drawn = ahead.next()
            assert drawn.lease is not None
            drawn.lease.release()
        with pytest.raises(OSError, match="camera"):
            ahead.next()
    finally:
        ahead.close()
    assert staging.stats().in_use_bytes == 0
    staging.close()
