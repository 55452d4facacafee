"""How a soak gets its encoder sessions and its frame buffers: the managed way or the unmanaged
baseline, behind one `Pipeline` protocol, so the soak's scheduler never asks which it has.

SQLAlchemy's `NullPool` sits behind the same interface as `QueuePool`; `BaselinePipeline` is
the soak's no-pooling pipeline in that sense: a new encoder on every acquire (each bitrate
change and reconnect), a new frame buffer every frame, the encoder's own reference
settings, no heap trimming. `ManagedPipeline` takes each frame through a staging buffer (drawn
ahead on a thread of its own for sources that cost), a pooled session (rate changes served
in place where the encoder can) and the reference policy.

Each pipeline keeps a typed ledger (`PipelineLedger`: sessions opened and asked for, reuse,
reference and staging peaks, each None where the pipeline has no such thing) and reports what
its pools hold for each sample (`sample_ledger`). Lifecycle: `start(encoder, frames)`, then
`begin`/`adapt`/`encode`/`end` any number of times, then `close()`: the prefetcher is
stopped and its frames released, the session pool closed (idle sessions closed), the
staging pool closed (buffers freed), the source closed, then (managed) the heap trimmed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import av
import numpy as np

from vramguard.criteria import REFERENCES_MODELLED
from vramguard.encode import EncoderConfig, EncoderSession
from vramguard.encode.session import Packet
from vramguard.heap import trim_heap
from vramguard.pools.references import ReferencePolicy, ReferenceTracker
from vramguard.pools.sessions import Lease, SessionPool
from vramguard.pools.staging import (
    StagingBudgetExceeded,
    StagingLease,
    StagingPool,
    frame_bytes,
)
from vramguard.prefetch import Prefetcher
from vramguard.sources import Source

#: a fault the pipeline survived: kind, message, stream time (None: the scheduler's now)
FaultSink = Callable[[str, str, "float | None"], None]
OpenSession = Callable[[EncoderConfig], Any]


@dataclass(frozen=True, slots=True)
class PipelineLedger:
    """What a pipeline did over a soak, for its result; None where it has no such part."""

    sessions_created: int  # encoders opened (the reference policy's probe open not counted)
    acquisitions: int  # sessions asked for: each connect, reconnect and rate change
    reuse_rate: float  # share of them served without opening an encoder
    adapted_in_place: int  # rate changes a session took without a new encoder
    max_idle_bytes: int | None  # idle encoder memory the pool may keep warm
    reference_peak_bytes: int | None  # references held at most, by the policy (modelled)
    reference_peak_basis: str | None
    staging_peak_bytes: int | None

    def exporter_counts(self) -> dict[str, float]:
        """The session counters Prometheus publishes (MetricsExporter.update's `pool`): each
        request was served by opening an encoder (created), by a pooled session (reused) or
        by the client's own session taking the rate change in place (adapted); reuse_rate
        is the share of the last two."""
        adapted = self.adapted_in_place
        reused = max(0, self.acquisitions - self.sessions_created - adapted)
        return {"created": self.sessions_created, "reused": reused, "adapted": adapted,
                "reuse_rate": self.reuse_rate}  # fmt: skip


class Pipeline(Protocol):
    """Sessions and frame buffers for a soak; see the module docstring."""

    @property
    def session(self) -> EncoderSession | None:
        """The session in use, or None between `end` and `begin`."""

    def start(self, encoder: EncoderConfig, frames: int) -> None:
        """Before the first frame: the encoder resolved, the number of frames to come."""

    def begin(self, kbps: int) -> None:
        """Take a session at this rate (a connect or reconnect)."""

    def end(self, failed: str | None = None) -> None:
        """Give the session back: kept warm, or, when it `failed`, never reused."""

    def adapt(self, kbps: int) -> bool:
        """The client's new rate; True when its own session took it in place."""

    def encode(self, index: int) -> list[Packet] | None:
        """Frame `index`, drawn and encoded; None when it was dropped for memory. Raises
        EncoderError when the encoder failed (the session is then to be ended as failed)."""

    def sample_ledger(self, t: float) -> dict[str, int | None]:
        """What the pipeline holds now, for a sample (the ledger fields of vramguard.fields)."""

    def ledger(self) -> PipelineLedger:
        """What the pipeline did so far."""

    def close(self) -> None:
        """Free everything, in the order of the module docstring (the session ended first)."""


def rate_config(encoder: EncoderConfig, ladder: tuple[int, ...], kbps: int) -> EncoderConfig:
    """The encoder at `kbps`, opened with room for the ladder's highest rate."""
    ceiling = max((*ladder, encoder.bitrate_kbps, kbps))
    return replace(encoder, bitrate_kbps=kbps, max_bitrate_kbps=ceiling)


class BaselinePipeline:
    """The unmanaged way: a new encoder per acquire, a new buffer per frame."""

    def __init__(self, source: Source, ladder: tuple[int, ...], open_session: OpenSession) -> None:
        self.source = source
        self.ladder = ladder
        self._open = open_session
        self._encoder: EncoderConfig | None = None
        self._session: EncoderSession | None = None
        self.sessions_opened = 0

    @property
    def session(self) -> EncoderSession | None:
        return self._session

    def start(self, encoder: EncoderConfig, frames: int) -> None:
        self._encoder = encoder

    def begin(self, kbps: int) -> None:
        assert self._encoder is not None, "start() first"
        # the encoder's own reference settings, opened at its rate
        config = replace(rate_config(self._encoder, self.ladder, kbps), max_bitrate_kbps=None)
        self._session = self._open(config)
        self.sessions_opened += 1

    def end(self, failed: str | None = None) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def adapt(self, kbps: int) -> bool:
        self.end()
        self.begin(kbps)
        return False

    def encode(self, index: int) -> list[Packet] | None:
        assert self._session is not None
        source = self.source
        image = np.empty((source.height * 3 // 2, source.width), np.uint8)  # new every frame
        source.draw(image, index)
        packets: list[Packet] = self._session.encode(
            av.VideoFrame.from_ndarray(image, format="yuv420p")
        )
        return packets

    def sample_ledger(self, t: float) -> dict[str, int | None]:
        return {"sessions_active": 1, "sessions_idle": 0, "reference_bytes": None,
                "staging_in_use_bytes": 0, "staging_idle_bytes": 0}  # fmt: skip

    def ledger(self) -> PipelineLedger:
        opened = self.sessions_opened
        return PipelineLedger(
            sessions_created=opened, acquisitions=opened, reuse_rate=0.0, adapted_in_place=0,
            max_idle_bytes=None, reference_peak_bytes=None, reference_peak_basis=None,
            staging_peak_bytes=None,
        )  # fmt: skip

    def close(self) -> None:
        self.end()
        self.source.close()


@dataclass(frozen=True, slots=True)
class ManagedSettings:
    """The managed pipeline's policies (SoakConfig's, resolved)."""

    max_idle: int
    max_sessions: int
    idle_ttl_s: float
    max_idle_bytes: int
    reference_budget_bytes: int
    staging_budget_bytes: int | None
    draws_ahead: bool


class ManagedPipeline:
    """Staging pool, session pool, prefetcher and reference policy; see the module docstring."""

    def __init__(
        self,
        source: Source,
        ladder: tuple[int, ...],
        settings: ManagedSettings,
        open_session: OpenSession,
        on_fault: FaultSink,
    ) -> None:
        self.source = source
        self.ladder = ladder
        self.settings = settings
        self._on_fault = on_fault
        self.pool = SessionPool(
            open_session, max_idle=settings.max_idle, max_sessions=settings.max_sessions,
            idle_ttl_s=settings.idle_ttl_s, on_event=self._pool_event,
            max_idle_bytes=settings.max_idle_bytes,
        )  # fmt: skip
        budget = settings.staging_budget_bytes or 8 * frame_bytes(
            source.width, source.height, "yuv420p"
        )
        self.staging = StagingPool(budget)
        self._encoder: EncoderConfig | None = None
        self._lease: Lease | None = None
        self._prefetch: Prefetcher | None = None
        self.references: ReferenceTracker | None = None
        self.reference_peak = 0
        self._staging_reported = False

    @property
    def session(self) -> EncoderSession | None:
        return self._lease.session if self._lease is not None else None

    def start(self, encoder: EncoderConfig, frames: int) -> None:
        self._encoder = encoder
        self.references = self._config(encoder.bitrate_kbps)[1].tracker()
        if self.settings.draws_ahead:
            self._prefetch = Prefetcher(self.source, self.staging, range(frames))

    def _config(self, kbps: int) -> tuple[EncoderConfig, ReferencePolicy]:
        assert self._encoder is not None, "start() first"
        enc = self._encoder
        base = rate_config(enc, self.ladder, kbps)
        policy = ReferencePolicy.for_config(base, self.settings.reference_budget_bytes)
        options = {**policy.encoder_options(enc.encoder), **enc.options}
        return replace(base, options=options), policy

    def begin(self, kbps: int) -> None:
        self._lease = self.pool.acquire(self._config(kbps)[0], timeout=30.0)
        self._new_stream()

    def _new_stream(self) -> None:
        if self.references is not None:
            self.references.reset()

    def end(self, failed: str | None = None) -> None:
        """Released (drained and kept warm by the pool), or invalidated when it failed."""
        lease, self._lease = self._lease, None
        if lease is None:
            return
        if failed is not None:
            self.pool.invalidate(lease, reason=failed)
        else:
            lease.release()

    def adapt(self, kbps: int) -> bool:
        """The pool's `change_bitrate`: in place where the session can, else another."""
        old = self._lease
        if old is None:
            self.begin(kbps)
            return False
        try:
            lease = self.pool.change_bitrate(old, kbps, timeout=30.0)
        finally:
            if not old.active:  # released for a session at the new rate
                self._lease = None
        if lease is old:
            return True
        self._lease = lease
        self._new_stream()
        return False

    def encode(self, index: int) -> list[Packet] | None:
        session = self.session
        assert session is not None
        lease = self._staged(index)
        if lease is None:
            return None  # dropped for memory
        try:
            packets: list[Packet] = session.encode(lease.frame)
        finally:
            lease.release(fence=session.fence())
        if self.references is not None:
            self.references.on_frame(keyframe=bool(packets) and packets[0].is_keyframe)
            self.reference_peak = max(self.reference_peak, self.references.reference_bytes)
        return packets

    def _staged(self, index: int) -> StagingLease | None:
        """Frame `index` in a staging buffer (drawn ahead by the prefetcher, or now); None
        when no buffer could be had."""
        error: MemoryError | None = None
        lease: StagingLease | None = None
        if self._prefetch is not None:
            drawn = self._prefetch.next()
            assert drawn.index == index, f"frame {drawn.index} drawn for {index}"
            lease, error = drawn.lease, drawn.error
        else:
            try:
                lease = self.staging.acquire(self.source.width, self.source.height)
            except MemoryError as exc:  # over the budget, or the allocator refused
                error = exc
            else:
                try:
                    self.source.draw(lease.array, index)
                except BaseException:
                    lease.release()
                    raise
        if lease is None and not isinstance(error, StagingBudgetExceeded):
            fps = self._encoder.fps if self._encoder is not None else 1
            self._staging_fault(str(error), index / fps)
        return lease

    def _staging_fault(self, message: str, t: float) -> None:
        self._staging_reported = True
        self._on_fault("staging", message, t)

    def _pool_event(self, event: str, detail: Any) -> None:
        if event == "open_retry":  # survived, but the user should hear of a session cap
            self._on_fault("open", str(detail), None)

    def sample_ledger(self, t: float) -> dict[str, int | None]:
        pool = self.pool.stats()
        staging = self.staging.stats()
        if staging.allocation_failures and not self._staging_reported:
            self._staging_fault(f"{self.staging.last_allocation_error}; retried after "
                                "freeing idle buffers", t)  # fmt: skip
        return {
            "sessions_active": pool.in_use,
            "sessions_idle": pool.idle,
            "reference_bytes": self.references.reference_bytes if self.references else None,
            "staging_in_use_bytes": staging.in_use_bytes,
            "staging_idle_bytes": staging.idle_bytes,
        }

    def ledger(self) -> PipelineLedger:
        pool = self.pool.stats()
        return PipelineLedger(
            sessions_created=pool.created, acquisitions=pool.requests,
            reuse_rate=pool.reuse_rate, adapted_in_place=pool.adapted_in_place,
            max_idle_bytes=self.pool.max_idle_bytes, reference_peak_bytes=self.reference_peak,
            reference_peak_basis=REFERENCES_MODELLED,
            staging_peak_bytes=self.staging.stats().peak_bytes,
        )  # fmt: skip

    def close(self) -> None:
        self.end()
        if self._prefetch is not None:
            self._prefetch.close()  # its leases back before the staging pool closes
        self.pool.close()
        self.staging.close()
        self.source.close()
        trim_heap()
