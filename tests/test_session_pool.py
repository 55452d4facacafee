"""The session pool: reuse, reconfiguration, limits, invalidation, and threads."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from vramguard.encode import EncoderConfig, open_encoder, warm_session_bytes
from vramguard.pools.sessions import PoolError, PoolExhausted, SessionPool

CONFIG = EncoderConfig("h264", 320, 240, 30, 2000, max_bitrate_kbps=8000)


@dataclass
class FakeSession:
    """Stands in for an encoder session where only the pool's behaviour is under test."""

    config: EncoderConfig
    in_place: bool = True
    closed: bool = False
    keyframes: int = 0
    broken: bool = False
    log: list[str] = field(default_factory=list)

    def healthy(self) -> bool:
        return not self.closed and not self.broken

    def set_bitrate(self, kbps: int) -> bool:
        if not self.in_place:
            return False
        self.config = self.config.with_bitrate(kbps)
        return True

    def force_keyframe(self) -> None:
        self.keyframes += 1

    def drain(self) -> list[object]:
        return []

    def close(self) -> list[object]:
        assert not self.closed, "closed twice"
        self.closed = True
        return []


class Opener:
    def __init__(self, in_place: bool = True) -> None:
        self.sessions: list[FakeSession] = []
        self.in_place = in_place

    def __call__(self, config: EncoderConfig) -> FakeSession:
        session = FakeSession(config, self.in_place)
        self.sessions.append(session)
        return session


def test_a_released_session_is_reused_and_starts_with_a_keyframe() -> None:
    pool = SessionPool(Opener())
    with pool.acquire(CONFIG) as first:
        session = first.session
    with pool.acquire(CONFIG) as second:
        assert second.session is session and second.reused
    assert session.keyframes == 1
    stats = pool.stats()
    assert (stats.created, stats.reused, stats.reuse_rate) == (1, 1, 0.5)


def test_a_new_bitrate_is_set_in_place_where_the_session_can() -> None:
    pool = SessionPool(Opener(in_place=True))
    pool.acquire(CONFIG).release()
    with pool.acquire(CONFIG.with_bitrate(5000)) as lease:
        assert lease.session.config.bitrate_kbps == 5000
    assert pool.stats().reconfigured == 1 and pool.stats().created == 1


def test_without_in_place_changes_a_warm_session_per_rate_is_kept() -> None:
    opener = Opener(in_place=False)
    pool = SessionPool(opener, max_idle=4)
    ladder = [2000, 3500, 5000, 8000]
    for _ in range(5):
        for kbps in ladder:
            pool.acquire(CONFIG.with_bitrate(kbps)).release()
    stats = pool.stats()
    assert stats.created == 4 and stats.reused == 16
    assert sorted(s.config.bitrate_kbps for s in opener.sessions) == ladder


def test_different_sizes_never_share_a_session() -> None:
    pool = SessionPool(Opener())
    pool.acquire(CONFIG).release()
    with pool.acquire(EncoderConfig("h264", 640, 480, 30, 2000)) as lease:
        assert not lease.reused


def test_max_sessions_waits_then_names_the_limit() -> None:
    pool = SessionPool(Opener(), max_sessions=2)
    leases = [pool.acquire(CONFIG), pool.acquire(CONFIG)]
    with pytest.raises(
        PoolExhausted, match=r"all 2 encoder sessions are in use \(max_sessions=2\)"
    ):
        pool.acquire(CONFIG, timeout=0.05)
    threading.Timer(0.05, leases[0].release).start()
    third = pool.acquire(CONFIG, timeout=5)
    assert third.reused
    assert pool.stats().timeouts == 1


def test_idle_sessions_expire_after_the_ttl() -> None:
    now = [0.0]
    opener = Opener()
    pool = SessionPool(opener, idle_ttl_s=60, clock=lambda: now[0])
    pool.acquire(CONFIG).release()
    now[0] = 59.0
    assert pool.expire() == 0
    now[0] = 61.0
    assert pool.expire() == 1
    assert opener.sessions[0].closed and pool.stats().expired == 1


def test_a_session_that_fails_its_check_is_closed_not_handed_out() -> None:
    opener = Opener()
    pool = SessionPool(opener)
    lease = pool.acquire(CONFIG)
    lease.release()
    opener.sessions[0].broken = True
    with pool.acquire(CONFIG) as fresh:
        assert fresh.session is not opener.sessions[0]
    assert opener.sessions[0].closed and pool.stats().failed_checks == 1


def test_a_session_that_raised_while_leased_is_invalidated() -> None:
    opener = Opener()
    pool = SessionPool(opener)
    with pytest.raises(RuntimeError), pool.acquire(CONFIG):
        raise RuntimeError("encoder blew up")
    assert opener.sessions[0].closed
    assert pool.stats().invalidated == 1 and pool.stats().idle == 0


def test_a_double_release_is_an_error() -> None:
    pool = SessionPool(Opener())
    lease = pool.acquire(CONFIG)
    lease.release()
    with pytest.raises(PoolError, match="already released"):
        lease.release()
    with pytest.raises(PoolError):
        pool.invalidate(lease)


def test_idle_sessions_beyond_max_idle_are_closed() -> None:
    opener = Opener()
    pool = SessionPool(opener, max_idle=1)
    leases = [pool.acquire(CONFIG) for _ in range(3)]
    for lease in leases:
        lease.release()
    assert pool.stats().idle == 1
    assert sum(s.closed for s in opener.sessions) == 2
    pool.close()
    assert all(s.closed for s in opener.sessions)
    with pytest.raises(PoolError, match="closed"):
        pool.acquire(CONFIG)


def test_a_failed_open_frees_its_slot() -> None:
    def failing(config: EncoderConfig) -> FakeSession:
        raise RuntimeError("OpenEncodeSessionEx failed: out of memory")

    pool = SessionPool(failing, max_sessions=1)
    for _ in range(3):
        with pytest.raises(RuntimeError, match="out of memory"):
            pool.acquire(CONFIG, timeout=0.01)
    assert pool.stats().in_use == 0


def test_eight_threads_never_exceed_max_sessions_and_lose_no_lease() -> None:
    opener = Opener(in_place=False)
    pool = SessionPool(opener, max_sessions=3, max_idle=3)
    in_use = [0]
    peak = [0]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            for i in range(150):
                lease = pool.acquire(
                    CONFIG.with_bitrate(2000 + 1000 * ((seed + i) % 3)), timeout=10
                )
                with lock:
                    in_use[0] += 1
                    peak[0] = max(peak[0], in_use[0])
                time.sleep(0)
                with lock:
                    in_use[0] -= 1
                if i % 17 == 0:
                    pool.invalidate(lease)
                else:
                    lease.release()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "deadlock"
    assert errors == []
    assert peak[0] <= 3
    stats = pool.stats()
    assert stats.in_use == 0
    assert stats.acquisitions == 8 * 150 == stats.created + stats.reused
    live = [s for s in opener.sessions if not s.closed]
    assert len(live) == stats.idle <= 3


class PoolMachine(RuleBasedStateMachine):
    """Random acquire / release / invalidate / expire against the pool's invariants."""

    leases = Bundle("leases")

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.opener = Opener(in_place=False)
        self.pool = SessionPool(self.opener, max_idle=2, max_sessions=4, idle_ttl_s=100,
                                clock=lambda: self.now, max_idle_bytes=25,
                                session_bytes=lambda config: config.width // 32)  # fmt: skip
        self.out = 0

    @rule(target=leases, kbps=st.sampled_from([2000, 5000]), width=st.sampled_from([320, 640]))
    def acquire(self, kbps: int, width: int) -> object:
        config = EncoderConfig("h264", width, 240, 30, kbps, max_bitrate_kbps=8000)
        try:
            lease = self.pool.acquire(config, timeout=0)
        except PoolExhausted:
            assert self.out == 4
            return None
        self.out += 1
        assert lease.session.config.session_key() == config.session_key()
        assert lease.session.config.bitrate_kbps == kbps
        assert not lease.session.closed
        return lease

    @rule(lease=consumes(leases), invalidate=st.booleans())
    def give_back(self, lease: object, invalidate: bool) -> None:
        if lease is None:
            return
        if invalidate:
            self.pool.invalidate(lease)  # type: ignore[arg-type]
            assert lease.session.closed  # type: ignore[attr-defined]
        else:
            self.pool.release(lease)  # type: ignore[arg-type]
        self.out -= 1

    @rule(target=leases, lease=consumes(leases), kbps=st.sampled_from([2000, 5000]))
    def change_rate(self, lease: object, kbps: int) -> object:
        if lease is None:
            return None
        new = self.pool.change_bitrate(lease, kbps, timeout=0)  # type: ignore[arg-type]
        assert new.session.config.bitrate_kbps == kbps and not new.session.closed
        return new

    @rule(seconds=st.floats(0, 150))
    def wait(self, seconds: float) -> None:
        self.now += seconds
        self.pool.expire()

    @invariant()
    def counts_balance(self) -> None:
        stats = self.pool.stats()
        assert stats.in_use == self.out
        assert stats.idle <= 2 and stats.idle_bytes <= 25
        assert stats.in_use + stats.idle <= 4
        live = sum(1 for s in self.opener.sessions if not s.closed)
        assert live == stats.in_use + stats.idle


TestPoolMachine = PoolMachine.TestCase
TestPoolMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_a_reused_real_session_neither_loses_nor_repeats_frames() -> None:
    from test_encode import decode, frames

    pool = SessionPool(open_encoder)
    with pool.acquire(CONFIG) as first:
        a = [p for f in frames(10) for p in first.session.encode(f)]
        a += first.session.drain()
    with pool.acquire(CONFIG) as second:
        assert second.reused
        b = [p for f in frames(12, start=10) for p in second.session.encode(f)]
        b += second.session.drain()
    pool.close()
    assert b[0].is_keyframe
    assert len(decode("h264", a)) == 10
    assert len(decode("h264", b)) == 12


def test_a_client_keeps_one_libx264_session_through_a_ladder_and_reconnects() -> None:
    from test_encode import frames

    pool = SessionPool(open_encoder, max_idle_bytes=10**9)
    config = EncoderConfig("h264", 320, 240, 30, 2000, encoder="libx264", gop=900,
                           max_bitrate_kbps=8000)  # fmt: skip
    lease = pool.acquire(config)
    session = lease.session
    keyframes, start = [], 0
    for step, kbps in enumerate([3500, 5000, 8000, 2000, 3500, 5000]):
        lease = pool.change_bitrate(lease, kbps)
        assert lease.session is session and session.config.bitrate_kbps == kbps
        packets = [p for f in frames(8, start=start) for p in session.encode(f)]
        keyframes += [start + i for i, p in enumerate(packets) if p.is_keyframe]
        start += 8
        if step % 3 == 2:  # the client reconnects
            lease.release()
            lease = pool.acquire(config.with_bitrate(kbps))
            assert lease.session is session and lease.reused
    lease.release()
    pool.close()
    stats = pool.stats()
    assert stats.created == 1 and stats.adapted_in_place == 6
    assert stats.requests == 9 and stats.reuse_rate == 8 / 9
    assert keyframes == [0, 24]  # the first frame, and the reconnect's: none for a rate
    assert session.stats.keyframes_after_rate_change == 0


def test_a_rate_change_the_session_cannot_take_gets_a_session_at_that_rate() -> None:
    opener = Opener(in_place=False)
    pool = SessionPool(opener)
    first = pool.acquire(CONFIG)
    second = pool.change_bitrate(first, 5000)
    assert second is not first and not first.active and second.active
    assert second.session.config.bitrate_kbps == 5000
    assert pool.stats().rate_changes == 1 and pool.stats().adapted_in_place == 0
    with pytest.raises(PoolError, match="already released"):
        pool.change_bitrate(first, 2000)


def test_the_idle_memory_budget_evicts_the_oldest_idle_session() -> None:
    opener = Opener(in_place=False)
    pool = SessionPool(opener, max_idle=8, max_idle_bytes=25, session_bytes=lambda c: 10)
    leases = [pool.acquire(CONFIG.with_bitrate(kbps)) for kbps in (2000, 3000, 4000)]
    for lease in leases:
        lease.release()
    oldest, *kept = opener.sessions
    assert oldest.closed and not any(s.closed for s in kept)
    stats = pool.stats()
    assert (stats.idle, stats.idle_bytes, stats.evicted_for_budget) == (2, 20, 1)


def test_a_session_larger_than_the_budget_is_not_kept_idle() -> None:
    opener = Opener()
    pool = SessionPool(opener, max_idle_bytes=5, session_bytes=lambda c: 10)
    pool.acquire(CONFIG).release()
    assert opener.sessions[0].closed and pool.stats().idle == 0


class LiveAtOpen:
    """Opens real sessions and records how many of them were still open at each open."""

    def __init__(self) -> None:
        self.sessions: list[object] = []
        self.live_at_open: list[int] = []

    def __call__(self, config: EncoderConfig) -> object:
        self.live_at_open.append(sum(not s.closed for s in self.sessions))  # type: ignore[attr-defined]
        session = open_encoder(config)
        self.sessions.append(session)
        return session


def test_libsvtav1_cannot_change_rate_so_the_pool_opens_within_its_budget() -> None:
    from test_encode import frames

    config = EncoderConfig("av1", 320, 240, 30, 500, encoder="libsvtav1", max_bitrate_kbps=2000)
    opener = LiveAtOpen()
    pool = SessionPool(opener, max_idle_bytes=warm_session_bytes(config))  # one warm session
    lease = pool.acquire(config)
    for kbps in (800, 1200, 800):
        old = lease.session
        assert old.set_bitrate(kbps) is False
        lease = pool.change_bitrate(lease, kbps)
        assert lease.session is not old and lease.session.config.bitrate_kbps == kbps
        assert len(lease.session.encode(frames(1)[0])) == 1
    lease.release()
    reconnect = pool.acquire(config.with_bitrate(800))  # the one kept warm: the last one
    assert reconnect.reused and reconnect.session is opener.sessions[-1]
    reconnect.release()
    pool.close()
    # every open found the previous session closed: never two encoders held at once
    assert opener.live_at_open == [0, 0, 0, 0]
    stats = pool.stats()
    assert stats.created == 4 and stats.evicted_for_budget == 3
    assert all(s.closed for s in opener.sessions)  # type: ignore[attr-defined]
