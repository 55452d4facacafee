"""The staging pool: pooled frames, fences, the budget, reclaim, and its invariants."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from vramguard.encode import EncoderConfig, open_encoder
from vramguard.pools.allocators import (
    ALIGNMENT,
    HostAllocator,
    TorchAllocator,
    torch_unavailable_reason,
)
from vramguard.pools.staging import (
    Pressure,
    StagingBudgetExceeded,
    StagingError,
    StagingPool,
    frame_bytes,
)

FRAME_320 = frame_bytes(320, 240, "yuv420p")  # 115,200 bytes


def test_a_lease_frame_is_a_pyav_frame_over_the_pooled_memory() -> None:
    pool = StagingPool(10 * FRAME_320)
    with pool.acquire(320, 240) as lease:
        assert (lease.frame.width, lease.frame.height, lease.frame.format.name) == (
            320,
            240,
            "yuv420p",
        )
        lease.array[:240] = 77  # the luma plane
        luma = np.frombuffer(lease.frame.planes[0], np.uint8)
        assert luma[0] == 77 and luma[-1] == 77
        assert lease.buffer.host is not None and lease.buffer.host.ctypes.data % ALIGNMENT == 0


def test_a_released_buffer_is_reused_without_a_new_allocation() -> None:
    pool = StagingPool(10 * FRAME_320)
    with pool.acquire(320, 240) as first:
        buffer = first.buffer
    with pool.acquire(320, 240) as second:
        assert second.buffer is buffer and second.reused
    assert pool.stats().allocations == 1 and pool.stats().reuses == 1


def test_a_buffer_the_encoder_may_still_read_is_not_handed_out() -> None:
    pool = StagingPool(10 * FRAME_320)
    held = [True]
    lease = pool.acquire(320, 240)
    buffer = lease.buffer
    lease.release(fence=lambda: not held[0])
    with pool.acquire(320, 240) as other:
        assert other.buffer is not buffer
    held[0] = False
    with pool.acquire(320, 240) as again:
        assert again.buffer is buffer


def test_over_budget_idle_buffers_are_purged_first_then_the_pool_refuses() -> None:
    pool = StagingPool(3 * FRAME_320)
    small = pool.acquire(160, 120)
    small.release()  # idle, of another size class
    leases = [pool.acquire(320, 240) for _ in range(2)]
    assert pool.pressure() is Pressure.MEDIUM
    third = pool.acquire(320, 240)  # fits only once the idle small buffer is purged
    assert pool.stats().purges == 1
    with pytest.raises(StagingBudgetExceeded, match="cannot hold another 320x240") as refused:
        pool.acquire(320, 240)
    assert isinstance(refused.value, MemoryError)
    assert pool.stats().refusals == 1
    for lease in [*leases, third]:
        lease.release()
    assert pool.stats().in_use_bytes == 0


def test_idle_buffers_are_reclaimed_after_the_timeout() -> None:
    now = [100.0]
    pool = StagingPool(10 * FRAME_320, reclaim_after_s=5.0, clock=lambda: now[0])
    pool.acquire(320, 240).release()
    now[0] += 4.9
    assert pool.reclaim() == 0
    now[0] += 0.2
    assert pool.reclaim() == 1
    assert pool.stats().idle_bytes == 0 and pool.stats().reclaims == 1


def test_a_frame_dropped_mid_encode_still_returns_its_buffer() -> None:
    pool = StagingPool(10 * FRAME_320)
    with pytest.raises(RuntimeError), pool.acquire(320, 240):
        raise RuntimeError("the encoder failed with this frame inside")
    assert pool.stats().in_use_bytes == 0 and pool.stats().idle_bytes == FRAME_320


def test_a_double_release_is_an_error() -> None:
    pool = StagingPool(10 * FRAME_320)
    lease = pool.acquire(320, 240)
    lease.release()
    with pytest.raises(StagingError, match="already released"):
        lease.release()


@pytest.mark.parametrize(
    ("size", "fmt"), [((321, 240), "yuv420p"), ((320, 240), "yuv444p"), ((0, 10), "gray")]
)
def test_bad_size_classes_are_value_errors(size: tuple[int, int], fmt: str) -> None:
    with pytest.raises(ValueError):
        StagingPool(10**9).acquire(*size, pix_fmt=fmt)


def test_pooled_frames_encode_with_a_fence_from_the_session() -> None:
    pool = StagingPool(10 * FRAME_320)
    session = open_encoder(EncoderConfig("h264", 320, 240, 30, 500))
    packets = []
    for i in range(20):
        lease = pool.acquire(320, 240)
        lease.array[:] = i * 10
        packets += session.encode(lease.frame)
        lease.release(fence=session.fence())
    session.close()
    assert len(packets) == 20
    assert pool.stats().allocations == 1  # low latency: each buffer came back at once


def test_the_torch_allocator_says_why_it_is_unavailable() -> None:
    reason = torch_unavailable_reason("cuda")
    if reason is None:  # a machine with PyTorch and CUDA
        buffer = TorchAllocator("cuda").allocate(1 << 20)
        assert buffer.host is None and buffer.nbytes == 1 << 20
    else:
        with pytest.raises(RuntimeError, match=re.escape(reason)):
            TorchAllocator("cuda")


class StagingMachine(RuleBasedStateMachine):
    leases = Bundle("leases")

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.pool = StagingPool(6 * FRAME_320, reclaim_after_s=10, clock=lambda: self.now,
                                allocator=HostAllocator(), trim_heap_after_free=False)  # fmt: skip
        self.live: dict[int, int] = {}  # id(lease) -> bytes
        self.fences: dict[int, list[bool]] = {}
        self.lent: set[int] = set()

    @rule(target=leases, size=st.sampled_from([(320, 240), (160, 120), (640, 480)]))
    def acquire(self, size: tuple[int, int]) -> object:
        try:
            lease = self.pool.acquire(*size)
        except StagingBudgetExceeded:
            assert self.pool.stats().idle_bytes == 0  # it purged before refusing
            return None
        assert id(lease.buffer) not in self.lent, "a buffer lent twice"
        self.lent.add(id(lease.buffer))
        self.live[id(lease)] = lease.buffer.nbytes
        return lease

    @rule(lease=consumes(leases), fenced=st.booleans())
    def release(self, lease: object, fenced: bool) -> None:
        if lease is None:
            return
        self.lent.discard(id(lease.buffer))  # type: ignore[attr-defined]
        if fenced:
            flag = [False]
            self.fences[id(lease.buffer)] = flag  # type: ignore[attr-defined]
            self.lent.add(id(lease.buffer))  # type: ignore[attr-defined]  # still referenced
            lease.release(fence=lambda: flag[0])  # type: ignore[attr-defined]
        else:
            lease.release()  # type: ignore[attr-defined]
        del self.live[id(lease)]

    @rule()
    def encoder_lets_go(self) -> None:
        for buffer_id, flag in list(self.fences.items()):
            flag[0] = True
            self.lent.discard(buffer_id)
            del self.fences[buffer_id]

    @rule(seconds=st.floats(0, 20))
    def wait(self, seconds: float) -> None:
        self.now += seconds
        self.pool.reclaim()

    @rule()
    def purge(self) -> None:
        self.pool.purge()
        assert self.pool.stats().idle_bytes == 0

    @invariant()
    def accounting_balances(self) -> None:
        stats = self.pool.stats()
        leased = sum(self.live.values())
        assert stats.in_use_bytes - stats.fenced_bytes == leased
        assert stats.in_use_bytes + stats.idle_bytes <= 6 * FRAME_320 or stats.idle_bytes == 0


TestStagingMachine = StagingMachine.TestCase
TestStagingMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
