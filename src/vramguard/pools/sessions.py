"""A pool of encoder sessions that reuses and reconfigures instead of rebuilding.

Sessions are keyed by what cannot change in place (codec, encoder, size, pixel format, fps,
GOP, ceiling); a session whose bitrate differs is reconfigured in place where the encoder
can, else a warm session at the asked rate is used, else a new one is opened. A client's
own rate change (`change_bitrate`) is served on its own session wherever that session
changes rate in place (libx264, nvenc, qsv): one session per client, no new encoder, and
for libx264 no keyframe. Every policy is a named argument, as in SQLAlchemy's pool:
`max_sessions` (the hardware cap: GeForce allows 8 NVENC sessions per system), `max_idle`,
`max_idle_bytes` (the idle encoder memory the pool may hold, by `session_bytes`, the
measured cost of a warm session of a config), `idle_ttl_s`, and the `timeout` of `acquire`.
Errors name the limit that was hit and its value.

What each strategy costs: a session that changes rate in place costs nothing per change
(no open, no memory, no keyframe with libx264; an IDR with nvenc and qsv). For encoders
that cannot (libx265, libsvtav1), a warm session per rate saves an open per change and
costs its memory while idle (a 1080p SVT-AV1 session ~70 MB); `max_idle_bytes` caps that,
and an open first closes the oldest idle sessions until the new one fits beside them
within the budget, so a budget of one session keeps the memory of the unpooled way (one
encoder at a time) and still serves a reconnect at the same rate warm.

Lifecycle of a session: opened -> leased -> released (drained, checked, idle) -> leased
again (starting with a keyframe) ... -> closed when it expires, is evicted for room, fails
its check, raised while leased (invalidated) or the pool closes. An open that fails while
idle sessions are held closes them and tries once more (a hardware session cap counts idle
sessions); a second failure goes to the caller, with the pool's counts balanced.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from types import TracebackType
from typing import Any, Protocol

from vramguard.encode.config import EncoderConfig
from vramguard.errors import VramguardError
from vramguard.heap import trim_heap


class PoolSession(Protocol):
    """What the pool needs of a session (EncoderSession has it). `set_bitrate` returns
    False where the session cannot change rate in place."""

    config: EncoderConfig

    def healthy(self) -> bool: ...
    def set_bitrate(self, kbps: int) -> bool: ...
    def force_keyframe(self) -> None: ...
    def drain(self) -> list[Any]: ...
    def close(self) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class SessionPoolStats:
    """A session pool's counters since it was made, and its sessions now (`stats()`): a flat
    record to log and diff, like torch.cuda.memory_stats(). `as_dict()` for JSON."""

    acquisitions: int
    requests: int
    created: int
    reused: int
    reconfigured: int
    rate_changes: int
    adapted_in_place: int
    evicted_for_budget: int
    invalidated: int
    expired: int
    evicted: int
    failed_checks: int
    waits: int
    timeouts: int
    open_failures: int
    in_use: int
    idle: int
    idle_bytes: int
    reuse_rate: float

    def as_dict(self) -> dict[str, int | float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class PoolError(VramguardError, RuntimeError):
    """Misuse of the pool: a lease released twice, or a closed pool."""


class PoolExhausted(PoolError):
    """Every session is in use and none came free in time."""


@dataclass
class Lease:
    """A session lent to one client. Use as a context manager: an exception inside
    invalidates the session (closed, never reused); a clean exit releases it."""

    pool: SessionPool
    session: Any
    config: EncoderConfig
    reused: bool
    _done: bool = field(default=False, repr=False)

    @property
    def active(self) -> bool:
        """Still lent: neither released nor invalidated (a `change_bitrate` that had to
        replace the session released this lease, even when the new acquire then failed)."""
        return not self._done

    def release(self) -> None:
        self.pool.release(self)

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._done:
            return
        if kind is None:
            self.pool.release(self)
        else:
            self.pool.invalidate(self, reason=f"{kind.__name__}: {value}")


@dataclass
class _Idle:
    session: Any
    since: float
    bytes: int  # what it is estimated to hold while idle (0 without a budget)


@dataclass
class _Counts:
    acquisitions: int = 0
    created: int = 0
    reused: int = 0
    reconfigured: int = 0
    rate_changes: int = 0
    adapted_in_place: int = 0
    evicted_for_budget: int = 0
    invalidated: int = 0
    expired: int = 0
    evicted: int = 0
    failed_checks: int = 0
    waits: int = 0
    timeouts: int = 0
    open_failures: int = 0


class SessionPool:
    """Thread-safe pool of encoder sessions."""

    def __init__(
        self,
        open_session: Callable[[EncoderConfig], Any] | None = None,
        max_idle: int = 2,
        max_sessions: int = 8,
        idle_ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[str, Any], None] | None = None,
        trim_heap_after_close: bool = True,
        max_idle_bytes: int | None = None,
        session_bytes: Callable[[EncoderConfig], int] | None = None,
    ) -> None:
        if max_sessions < 1 or max_idle < 0 or idle_ttl_s <= 0:
            raise ValueError("max_sessions >= 1, max_idle >= 0 and idle_ttl_s > 0 are required")
        if max_idle_bytes is not None and max_idle_bytes < 0:
            raise ValueError(f"max_idle_bytes must be 0 or more, not {max_idle_bytes}")
        if open_session is None:
            from vramguard.encode.session import open_encoder

            open_session = open_encoder
        if session_bytes is None:
            from vramguard.encode.costs import warm_session_bytes

            session_bytes = warm_session_bytes
        self._open = open_session
        self._session_bytes = session_bytes
        self.max_idle = max_idle
        self.max_idle_bytes = max_idle_bytes
        self.max_sessions = max_sessions
        self.idle_ttl_s = idle_ttl_s
        self._clock = clock
        self._on_event = on_event
        self._trim = trim_heap_after_close
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._idle: list[_Idle] = []  # oldest first
        self._leased: set[int] = set()  # id() of sessions lent out
        self._opening = 0
        self._counts = _Counts()
        self._closed = False

    # -- the policy -----------------------------------------------------------------------

    def acquire(self, config: EncoderConfig, timeout: float | None = None) -> Lease:
        """A session for `config`: reused if one fits, else new; waits up to `timeout`
        seconds (None: forever) when `max_sessions` are all leased."""
        to_close: list[Any] = []
        deadline = None if timeout is None else self._clock() + timeout
        try:
            with self._lock:
                self._check_open()
                self._counts.acquisitions += 1
                while True:
                    to_close += self._expire()
                    lease = self._take_idle(config, to_close)
                    if lease is not None:
                        return lease
                    if self._room(to_close):
                        self._fit_budget(self._cost(config), to_close)
                        self._opening += 1
                        break
                    self._wait(deadline)
        finally:
            self._close_all(to_close)
        return self._open_new(config)

    def _wait(self, deadline: float | None) -> None:
        self._counts.waits += 1
        remaining = None if deadline is None else deadline - self._clock()
        if remaining is not None and remaining <= 0:
            self._counts.timeouts += 1
            raise PoolExhausted(
                f"all {self.max_sessions} encoder sessions are in use "
                f"(max_sessions={self.max_sessions}); none came free in time"
            )
        self._freed.wait(remaining)
        self._check_open()

    def _take_idle(self, config: EncoderConfig, to_close: list[Any]) -> Lease | None:
        key = config.session_key()
        matching = [i for i in self._idle if i.session.config.session_key() == key]
        # the same rate first (no change at all), then the most recently used
        matching.sort(
            key=lambda i: (i.session.config.bitrate_kbps != config.bitrate_kbps, -i.since)
        )
        for idle in matching:
            session = idle.session
            if not session.healthy():
                self._idle.remove(idle)
                self._counts.failed_checks += 1
                to_close.append(session)
                continue
            same_rate = session.config.bitrate_kbps == config.bitrate_kbps
            if not same_rate and not session.set_bitrate(config.bitrate_kbps):
                continue  # this encoder cannot change rate in place: look for another
            self._idle.remove(idle)
            self._counts.reused += 1
            if not same_rate:
                self._counts.reconfigured += 1
            session.force_keyframe()
            self._leased.add(id(session))
            self._emit("reuse", session)
            return Lease(self, session, config, reused=True)
        return None

    def change_bitrate(self, lease: Lease, kbps: int, timeout: float | None = None) -> Lease:
        """A client's new rate: on its own session where that session changes rate in place
        (the same lease comes back, no keyframe asked for), else the session is released
        and one at the new rate acquired (warm if kept, else opened) and returned.

        Raises the session's BitrateOutOfRange for a rate it can never have (the lease and
        its session stay as they were)."""
        with self._lock:
            if lease._done or lease.pool is not self:
                raise PoolError("this lease was already released or invalidated")
        if kbps == lease.session.config.bitrate_kbps:
            return lease
        adapted = lease.session.set_bitrate(kbps)
        with self._lock:
            self._counts.rate_changes += 1
            if adapted:
                self._counts.adapted_in_place += 1
        if adapted:
            lease.config = lease.config.with_bitrate(kbps)
            self._emit("adapt", lease.session)
            return lease
        config = lease.config.with_bitrate(kbps)
        self.release(lease)
        return self.acquire(config, timeout)

    def _cost(self, config: EncoderConfig) -> int:
        return 0 if self.max_idle_bytes is None else self._session_bytes(config)

    def _idle_bytes(self) -> int:
        return sum(i.bytes for i in self._idle)

    def _fit_budget(self, extra_bytes: int, to_close: list[Any]) -> None:
        """Close the oldest idle sessions until the idle ones and `extra_bytes` (a session
        about to be opened) fit `max_idle_bytes`."""
        if self.max_idle_bytes is None:
            return
        while self._idle and self._idle_bytes() + extra_bytes > self.max_idle_bytes:
            to_close.append(self._idle.pop(0).session)
            self._counts.evicted += 1
            self._counts.evicted_for_budget += 1

    def _room(self, to_close: list[Any]) -> bool:
        """Whether one more session may be opened, evicting the oldest idle one if needed."""
        if len(self._leased) + self._opening + len(self._idle) < self.max_sessions:
            return True
        if self._idle:
            victim = self._idle.pop(0)
            self._counts.evicted += 1
            to_close.append(victim.session)
            return True
        return False

    def _open_new(self, config: EncoderConfig) -> Lease:
        try:
            session = self._open_or_make_room(config)
        except BaseException:
            with self._lock:
                self._opening -= 1
                self._freed.notify()
            raise
        with self._lock:
            self._opening -= 1
            self._counts.created += 1
            self._leased.add(id(session))
        self._emit("create", session)
        return Lease(self, session, config, reused=False)

    def _open_or_make_room(self, config: EncoderConfig) -> Any:
        """Open a session; when that fails and idle sessions are held, close them and try
        once more: a hardware cap (NVENC's concurrent sessions) counts idle sessions too."""
        try:
            return self._open(config)
        except Exception as exc:
            first = str(exc) or type(exc).__name__
            with self._lock:
                self._counts.open_failures += 1
                idle, self._idle = self._idle, []
                self._counts.evicted += len(idle)
            if not idle:
                raise
        self._close_all([i.session for i in idle])
        try:
            session = self._open(config)
        except Exception:
            with self._lock:
                self._counts.open_failures += 1
            raise
        self._emit("open_retry", f"{first}; opened after closing {len(idle)} idle sessions")
        return session

    def _expire(self) -> list[Any]:
        now = self._clock()
        expired = [i for i in self._idle if now - i.since >= self.idle_ttl_s]
        for idle in expired:
            self._idle.remove(idle)
            self._counts.expired += 1
        return [i.session for i in expired]

    def release(self, lease: Lease) -> None:
        """Return a session: drained, checked, kept idle (up to `max_idle`) or closed."""
        session = self._finish(lease)
        keep = False
        try:
            session.drain()
            keep = session.healthy()
        except Exception:
            keep = False
        to_close: list[Any] = []
        cost = self._cost(session.config) if keep else 0
        with self._lock:
            self._leased.discard(id(session))
            if keep and not self._closed and self.max_idle > 0:
                self._idle.append(_Idle(session, self._clock(), cost))
                while len(self._idle) > self.max_idle:
                    to_close.append(self._idle.pop(0).session)
                    self._counts.evicted += 1
                self._fit_budget(0, to_close)
            else:
                to_close.append(session)
                if not keep:
                    self._counts.failed_checks += 1
            self._freed.notify()
        self._close_all(to_close)
        self._emit("release", session)

    def invalidate(self, lease: Lease, reason: str = "") -> None:
        """Close a session that misbehaved; it is never handed out again."""
        session = self._finish(lease)
        with self._lock:
            self._leased.discard(id(session))
            self._counts.invalidated += 1
            self._freed.notify()
        self._close_all([session])
        self._emit("invalidate", reason)

    def _finish(self, lease: Lease) -> Any:
        with self._lock:
            if lease._done or lease.pool is not self:
                raise PoolError("this lease was already released or invalidated")
            lease._done = True
        return lease.session

    def close(self) -> None:
        """Close every idle session; leased ones are closed when they come back. Idempotent."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._freed.notify_all()
        self._close_all([i.session for i in idle])

    def expire(self) -> int:
        """Close idle sessions past `idle_ttl_s` now (acquire does this too); returns how many."""
        with self._lock:
            expired = self._expire()
        self._close_all(expired)
        return len(expired)

    # -- reporting ------------------------------------------------------------------------

    def stats(self) -> SessionPoolStats:
        """Counters since the pool was made, and the sessions in use and idle now.

        `requests` are the sessions clients asked for: each acquire, and each rate change
        served on the client's own session (`adapted_in_place`); `reuse_rate` is the share
        of them served without opening an encoder. `idle_bytes` is what the idle sessions
        are estimated to hold (by `session_bytes`; 0 without `max_idle_bytes`)."""
        with self._lock:
            counts = self._counts
            requests = counts.acquisitions + counts.adapted_in_place
            warm = counts.reused + counts.adapted_in_place
            return SessionPoolStats(
                acquisitions=counts.acquisitions, requests=requests, created=counts.created,
                reused=counts.reused, reconfigured=counts.reconfigured,
                rate_changes=counts.rate_changes, adapted_in_place=counts.adapted_in_place,
                evicted_for_budget=counts.evicted_for_budget, invalidated=counts.invalidated,
                expired=counts.expired, evicted=counts.evicted,
                failed_checks=counts.failed_checks, waits=counts.waits,
                timeouts=counts.timeouts, open_failures=counts.open_failures,
                in_use=len(self._leased), idle=len(self._idle), idle_bytes=self._idle_bytes(),
                reuse_rate=warm / requests if requests else 0.0,
            )  # fmt: skip

    def _check_open(self) -> None:
        if self._closed:
            raise PoolError("the session pool is closed")

    def _emit(self, event: str, detail: Any) -> None:
        if self._on_event is not None:
            self._on_event(event, detail)

    def _close_all(self, sessions: list[Any]) -> None:
        """Close sessions, then give the heap they freed back to the system (glibc keeps
        hundreds of MB after SVT-AV1 sessions otherwise)."""
        for session in sessions:
            with contextlib.suppress(Exception):  # a session that fails to close is gone anyway
                session.close()
        if sessions and self._trim:
            trim_heap()

    def __enter__(self) -> SessionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
