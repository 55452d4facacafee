"""Load: 32 threads share one SessionPool and one StagingPool for 30 s of random acquire,
release, invalidate, bitrate changes, failing opens and fenced buffers. Invariants hold
throughout, the counts balance at the end, and nothing deadlocks (every wait has a timeout).

Sessions are fakes (what is under test is the pool's bookkeeping, and 32 real encoders at
once would only measure this machine's two cores); staging buffers are real host memory.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from vramguard.encode import EncoderConfig
from vramguard.pools.sessions import PoolExhausted, SessionPool
from vramguard.pools.staging import StagingBudgetExceeded, StagingPool, frame_bytes

THREADS = 32
SECONDS = 30.0
MAX_SESSIONS = 6
LADDER = (1000, 2000, 4000, 8000)
SIZES = ((64, 64), (128, 72), (32, 32))
CONFIGS = (
    EncoderConfig("h264", 320, 240, 30, 1000, max_bitrate_kbps=8000),
    EncoderConfig("hevc", 320, 240, 30, 1000, max_bitrate_kbps=8000),
)


class OpenFailed(RuntimeError):
    pass


@dataclass(eq=False)
class LoadSession:
    config: EncoderConfig
    in_place: bool
    holder: int | None = None
    closes: int = 0
    frames: int = 0
    broken: bool = False

    def healthy(self) -> bool:
        return self.closes == 0 and not self.broken

    def set_bitrate(self, kbps: int) -> bool:
        if not self.in_place or kbps > self.config.ceiling_kbps:
            return False
        self.config = self.config.with_bitrate(kbps)
        return True

    def force_keyframe(self) -> None:
        pass

    def drain(self) -> list[object]:
        return []

    def close(self) -> list[object]:
        self.closes += 1
        return []


@dataclass
class Opener:
    sessions: list[LoadSession] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: int = 0

    def __call__(self, config: EncoderConfig) -> LoadSession:
        with self.lock:
            self.calls += 1
            if self.calls % 17 == 0:  # now and then the hardware says no
                raise OpenFailed("OpenEncodeSessionEx failed: out of memory (10)")
            session = LoadSession(config, in_place=config.codec == "h264")
            self.sessions.append(session)
        time.sleep(0.0005)  # opening takes a while, outside the pool's lock
        return session


def worker(
    seed: int,
    pool: SessionPool,
    staging: StagingPool,
    stop: threading.Event,
    outcomes: list[Counter[str]],
    errors: list[str],
) -> None:
    rng = random.Random(seed)
    me = threading.get_ident()
    local: Counter[str] = Counter()
    try:
        while not stop.is_set():
            if rng.random() < 0.5:
                session_round(rng, me, pool, local)
            else:
                staging_round(rng, staging, local)
    except Exception as exc:  # any escape is the test's failure
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        outcomes.append(local)  # list.append is atomic


def session_round(rng: random.Random, me: int, pool: SessionPool, local: Counter[str]) -> None:
    config = rng.choice(CONFIGS).with_bitrate(rng.choice(LADDER))
    try:
        lease = pool.acquire(config, timeout=0.02)
    except PoolExhausted:
        local["exhausted"] += 1
        return
    except OpenFailed:
        local["open_failed"] += 1
        return
    session = lease.session
    assert session.holder is None, "one session lent to two clients"
    assert session.closes == 0, "a closed session was lent"
    session.holder = me
    local["created" if not lease.reused else "reused"] += 1
    session.frames += 1
    time.sleep(rng.random() * 0.001)  # encoding a frame
    if rng.random() < 0.2:
        session.set_bitrate(rng.choice(LADDER))
    action = rng.random()
    session.holder = None
    if action < 0.15:
        try:
            with lease:
                raise RuntimeError("encoder failed")
        except RuntimeError:
            local["invalidated"] += 1
    elif action < 0.2:
        session.broken = True
        lease.release()
        local["released_broken"] += 1
    else:
        lease.release()
        local["released"] += 1


def staging_round(rng: random.Random, staging: StagingPool, local: Counter[str]) -> None:
    width, height = rng.choice(SIZES)
    try:
        lease = staging.acquire(width, height)
    except StagingBudgetExceeded:
        local["staging_refused"] += 1
        return
    mark = rng.randrange(256)
    lease.array[:] = mark  # the buffer is real memory and ours alone while leased
    time.sleep(rng.random() * 0.001)  # the encoder reading it
    assert int(lease.array[0, 0]) == mark and int(lease.array[-1, -1]) == mark
    local["staging_leased"] += 1
    if rng.random() < 0.3:
        ready = time.monotonic() + rng.random() * 0.002
        lease.release(fence=lambda: time.monotonic() >= ready)
    else:
        lease.release()


def test_32_threads_for_30_seconds_keep_every_invariant() -> None:
    opener = Opener()
    pool = SessionPool(opener, max_idle=3, max_sessions=MAX_SESSIONS, idle_ttl_s=0.05,
                       trim_heap_after_close=False)  # fmt: skip
    budget = 5 * frame_bytes(128, 72, "yuv420p")
    staging = StagingPool(budget, reclaim_after_s=0.01, trim_heap_after_free=False)
    stop = threading.Event()
    per_thread: list[Counter[str]] = []
    errors: list[str] = []
    threads = [
        threading.Thread(target=worker, args=(seed, pool, staging, stop, per_thread, errors))
        for seed in range(THREADS)
    ]
    violations: list[str] = []
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + SECONDS
    checks = 0
    while time.monotonic() < deadline and not errors:
        stats, space = pool.stats(), staging.stats()
        if stats.in_use + stats.idle > MAX_SESSIONS:
            violations.append(f"{stats.in_use} in use + {stats.idle} idle > cap")
        if space.in_use_bytes + space.idle_bytes > budget:
            violations.append(f"staging holds {space} over its budget {budget}")
        checks += 1
        time.sleep(0.01)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"deadlock: {stuck} never finished"
    assert errors == [] and violations == [] and checks > 100
    outcomes: Counter[str] = sum(per_thread, Counter())
    assert len(per_thread) == THREADS

    stats = pool.stats()
    assert stats.in_use == 0
    # every acquire ended one way: a session (new or reused), a timeout, or a failed open
    assert stats.acquisitions == (
        outcomes["created"] + outcomes["reused"] + outcomes["exhausted"] + outcomes["open_failed"]
    )
    assert stats.created == outcomes["created"] and stats.reused == outcomes["reused"]
    assert stats.timeouts == outcomes["exhausted"]
    assert stats.invalidated == outcomes["invalidated"]
    assert outcomes["created"] > 100 and outcomes["reused"] > 1000 and outcomes["exhausted"] > 0
    assert outcomes["open_failed"] > 0 and stats.reconfigured > 0
    assert stats.created == len(opener.sessions)
    open_now = [s for s in opener.sessions if s.closes == 0]
    assert len(open_now) == stats.idle  # the rest were closed, each exactly once
    print(f"\n{THREADS} threads, {SECONDS:g} s: {dict(outcomes)}; pool {stats}")
    pool.close()
    assert all(s.closes == 1 for s in opener.sessions), "a session closed twice or never"

    space = staging.stats()
    assert space.in_use_bytes - space.fenced_bytes == 0  # nothing still leased
    assert space.allocations + space.reuses == outcomes["staging_leased"]
    assert space.refusals == outcomes["staging_refused"] > 0
    time.sleep(0.01)  # let the last fences clear
    staging.close()
    assert staging.stats().buffers == 0 and staging.stats().in_use_bytes == 0
