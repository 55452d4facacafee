"""The soak runner: the plan's long-session test on a real encoder, judged against its
success criteria.

A cheap synthetic source draws moving frames; the managed pipeline takes each through a
staging buffer, a pooled encoder session and the reference policy; every sample interval
the probes and the pools' ledger go into the tracker and the JSONL log. All soak times
(duration, sampling, adaptation, reconnects) are stream time, frames / fps: without
`realtime` the encoder runs as fast as it can, so 24 hours of stream take far less wall
time. `baseline` runs the unmanaged way for a before/after comparison: a new encoder on
every bitrate change and reconnect, a new frame buffer every frame, no reference policy and
no heap trimming.

Probes are read on a sampler thread under a time limit (a hung probe never stalls the
encoder). Faults are survived where they can be and reported once each (a log event, the
`on_fault` callback, and `faults` in the result): an encoder that raises is invalidated and
replaced (the frame counted in `frames_dropped_error`; `max_encoder_errors` in a row end the
run), a staging allocation that fails drops the frame for memory, a probe that raises or
hangs costs its sample, a log that cannot be written keeps its whole lines and the run goes
on. An encoder that cannot be opened mid-run ends the run with `failure` set, the result
written and the criterion "run completed" missed. See docs/reliability.md.

In the managed pipeline a source that costs (testsrc2) draws the next frames into staging
buffers on a thread of its own (`prefetch`, two ahead), overlapping the encoder, which runs
without the GIL; the cheap synthetic source draws on the encoding thread.

Teardown order, at the end, on a stop request or a fatal fault: the session in use is
released (invalidated if it failed); the prefetcher is stopped and its frames released; the
session pool is closed (its idle sessions closed,
the heap trimmed); the staging pool is closed (buffers freed); the source is closed; the
reading in flight is awaited (within its time limit); a last reading after teardown is
taken; the sampler is stopped; then the caller writes the result and closes the log.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from vramguard import probes
from vramguard.criteria import REFERENCES_MODELLED, Criteria, judge
from vramguard.encode import (
    EncoderConfig,
    EncoderError,
    EncoderSession,
    EncoderUnavailable,
    open_encoder,
    warm_session_bytes,
)
from vramguard.faultlog import FaultLog
from vramguard.heap import heap_stats, trim_heap
from vramguard.pools.references import DEFAULT_BUDGET_BYTES, ReferencePolicy, ReferenceTracker
from vramguard.pools.sessions import PoolError, SessionPool
from vramguard.pools.staging import (
    StagingBudgetExceeded,
    StagingLease,
    StagingPool,
    frame_bytes,
)
from vramguard.prefetch import Prefetcher
from vramguard.probes import Reading
from vramguard.samplelog import SampleLogWriter
from vramguard.sampler import DEFAULT_TIME_LIMIT_S, Sampler
from vramguard.sources import SyntheticSource, make_source
from vramguard.tracker import LeakAlert, MemoryTracker, Sample, choose_process_metric
from vramguard.trend import HOUR, DetectorConfig, Trend, detect_leak, prewarm

__all__ = ["Criteria", "SoakConfig", "SoakRunner", "SyntheticSource", "judge"]

#: test-only seam: bytes kept per frame, to prove a leak makes the soak fail (not a user flag)
LEAK_SEAM_ENV = "VRAMGUARD_TEST_LEAK_BYTES_PER_FRAME"


@dataclass(frozen=True, slots=True)
class SoakConfig:
    """One soak: what to encode, for how long (stream time), and how to disturb it."""

    encoder: EncoderConfig
    duration_s: float = 60.0
    sample_interval_s: float | None = None  # default: duration / 1440, within 0.25 s-60 s
    realtime: bool = False
    ladder_kbps: tuple[int, ...] = ()
    adapt_every_s: float | None = None
    reconnect_every_s: float | None = None
    baseline: bool = False
    max_idle: int | None = None  # default: one warm session per ladder rung, plus one
    # idle encoder memory the pool may hold; default: one warm session of this codec and size
    # (the memory of the baseline's one encoder at a time; see SessionPool)
    max_idle_bytes: int | None = None
    max_sessions: int = 8
    reference_budget_bytes: int = DEFAULT_BUDGET_BYTES
    staging_budget_bytes: int | None = None  # default: 8 frames
    detector_window_s: float | None = None  # default: a third of the duration, at most 8 h
    probe_time_limit_s: float = DEFAULT_TIME_LIMIT_S  # wall seconds a reading may take
    max_encoder_errors: int = 3  # encoder failures in a row (no good frame between) that end it
    source: str = "synthetic"  # or "testsrc2" (FFmpeg's pattern): see vramguard.sources
    prefetch: bool | None = None  # draw ahead on a thread of its own; None: for testsrc2
    criteria: Criteria = field(default_factory=Criteria)

    @property
    def draws_ahead(self) -> bool:
        """Whether frames are drawn ahead: as asked, else for sources that cost (testsrc2,
        1.3 ms a 1080p frame: the soak went from 0.98 to 1.27 of a bare loop), not for the
        synthetic one (0.2 ms: the hand-over gained nothing measurable)."""
        return self.prefetch if self.prefetch is not None else self.source != "synthetic"

    @property
    def sample_every_s(self) -> float:
        if self.sample_interval_s is not None:
            return self.sample_interval_s
        # 1440 samples (a day at one a minute), but not more than four a second: each
        # sample reads /proc/self/smaps_rollup, which stalls the encoder threads' page faults
        # while the kernel walks the mappings (measured: 9% of 1080p fps at 48 a second)
        return min(60.0, max(0.25, self.duration_s / 1440))

    @property
    def time_scale(self) -> float:
        """The detector's window over its default 8 h: 1 for a 24 h soak, tiny for a minute."""
        return (self.detector_window_s or min(8 * HOUR, self.duration_s / 3)) / (8 * HOUR)

    def detector(self) -> DetectorConfig:
        """The detector on the soak's time scale. Its warm-up covers the encoder's start and
        one pass through the ladder (every rung's session opened once: the pool warming)."""
        config = DetectorConfig()
        if self.detector_window_s:
            window = self.detector_window_s
            scaled = config.scaled(window) if window != config.history_s else config
            scaled = replace(scaled, warmup_s=max(
                scaled.warmup_s, min(0.25 * self.duration_s, config.warmup_s)
            ))  # fmt: skip
        else:
            scaled = config.for_duration(self.duration_s)
        ladder_pass = len(self.ladder_kbps) * (self.adapt_every_s or 0.0)
        warmup = max(scaled.warmup_s, min(ladder_pass, self.duration_s / 2))
        return replace(scaled, warmup_s=warmup)


@dataclass
class SoakState:
    """What a soak has done so far: counters, the session held, the last sample."""

    frames: int = 0
    dropped_memory: int = 0
    dropped_error: int = 0
    errors_in_a_row: int = 0
    samples_skipped: int = 0
    late: int = 0
    bytes_out: int = 0
    baseline_sessions: int = 0
    baseline_acquisitions: int = 0
    keyframes: int = 0
    # keyframes a rate change caused: a new session's first, or one an encoder that changed
    # in place added (EncoderSession.stats: nvenc's IDR; never libx264)
    rate_change_keyframes: int = 0
    rate_changes: int = 0
    rung_bytes: dict[int, list[int]] = field(default_factory=dict)  # kbps -> [bytes, frames]
    reference_peak: int = 0
    last_sample: Sample | None = None
    alerts: list[LeakAlert] = field(default_factory=list)
    stop_reason: str | None = None
    failure: str | None = None  # the fault that ended the run early


class SoakRunner:
    """Runs one soak. `stop()` (from a signal handler, say) ends it cleanly at the next frame."""

    def __init__(
        self,
        config: SoakConfig,
        log: SampleLogWriter | None = None,
        on_sample: Callable[[SoakRunner, Sample], None] | None = None,
        open_session: Callable[[EncoderConfig], Any] = open_encoder,
        on_fault: Callable[[str, str], None] | None = None,
    ) -> None:
        self.config = config
        self.log = log
        self.on_sample = on_sample
        self.reports = FaultLog(log, on_fault)
        self.sampler: Sampler[tuple[float, float, dict[str, int | None]]] | None = None
        self._held: Any = None  # the pool's lease (or, in the baseline, the session itself)
        self._session: EncoderSession | None = None
        self._started = 0.0
        self._prefetch: Prefetcher | None = None
        self._open = open_session
        self._stop = threading.Event()
        self.state = SoakState()
        self.tracker = MemoryTracker(detector_config=config.detector())
        # preallocated, like the tracker's ring: the runner's memory must not grow as it samples
        capacity = int(config.duration_s / config.sample_every_s) + 4
        self._series = np.full((2, capacity), np.nan)
        self._points = 0
        self.encoder_name: str | None = None
        self.encoder_reason: str | None = None
        self.hardware = False
        self.wall_s = 0.0
        self.after_teardown: Sample | None = None
        self.final_trend: Trend | None = None  # the verdict's trend, once result() ran
        enc = config.encoder
        self.source = make_source(config.source, enc.width, enc.height, enc.fps)
        ladder = config.ladder_kbps or (enc.bitrate_kbps,)
        self.pool = SessionPool(
            self._open,
            max_idle=config.max_idle if config.max_idle is not None else len(ladder) + 1,
            max_sessions=config.max_sessions,
            idle_ttl_s=max(300.0, 2 * (config.adapt_every_s or 0) * len(ladder)),
            on_event=self._pool_event,
            max_idle_bytes=(
                config.max_idle_bytes
                if config.max_idle_bytes is not None
                else warm_session_bytes(enc)
            ),
        )
        self._rate_keyframes_before = 0  # the held session's count when it was taken
        self._new_session_for_rate = False  # a session taken for a rate change, no frame yet
        budget = config.staging_budget_bytes or 8 * frame_bytes(enc.width, enc.height, "yuv420p")
        self.staging = StagingPool(budget)
        self._leak_per_frame = int(os.environ.get(LEAK_SEAM_ENV, "0") or 0)
        self._leaked: list[bytes] = []

    def stop(self, reason: str = "stopped") -> None:
        self.state.stop_reason = reason
        self._stop.set()

    # -- the session in use ---------------------------------------------------------------

    def _resolve_encoder(self) -> EncoderConfig:
        """With encoder "auto", open once to learn which encoder this machine gives (the
        reference policy's options differ by family), then use that name throughout."""
        enc = self.config.encoder
        probe = self._open(enc)
        self.encoder_name = probe.encoder
        self.encoder_reason = probe.choice.reason
        self.hardware = probe.choice.hardware
        probe.close()
        return replace(enc, encoder=self.encoder_name)

    def _policy(self, kbps: int) -> tuple[EncoderConfig, ReferencePolicy]:
        enc = self._encoder_config
        ceiling = max((*self.config.ladder_kbps, enc.bitrate_kbps, kbps))
        base = replace(enc, bitrate_kbps=kbps, max_bitrate_kbps=ceiling)
        policy = ReferencePolicy.for_config(base, self.config.reference_budget_bytes)
        if self.config.baseline:  # the encoder's own reference settings, opened at its rate
            return replace(base, max_bitrate_kbps=None), policy
        options = {**policy.encoder_options(enc.encoder), **enc.options}
        return replace(base, options=options), policy

    def _begin_session(self, kbps: int) -> None:
        config, _ = self._policy(kbps)
        if self.config.baseline:
            self._session = self._held = self._open(config)
            self.state.baseline_sessions += 1
            self.state.baseline_acquisitions += 1
        else:
            self._held = self.pool.acquire(config, timeout=30.0)
            self._session = self._held.session
        self._rate_keyframes_before = self._rate_keyframes()

    def _rate_keyframes(self) -> int:
        stats = getattr(self._session, "stats", None)
        return int(getattr(stats, "keyframes_after_rate_change", 0))

    def _end_session(self, failed: str | None = None) -> None:
        """Give the session back: released (drained and kept warm by the pool), or, when it
        failed, invalidated (closed, never reused). The baseline closes it either way."""
        held, session = self._held, self._session
        if session is not None:
            self.state.rate_change_keyframes += self._rate_keyframes() - self._rate_keyframes_before
        self._held = self._session = None
        if session is None:
            return
        if self.config.baseline:
            session.close()
        elif failed is not None:
            self.pool.invalidate(held, reason=failed)
        else:
            held.release()

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self._encoder_config = self._resolve_encoder()
        self._prewarm()
        self.sampler = Sampler(probes.read, self.config.probe_time_limit_s)
        self._started = time.monotonic()
        try:
            self._loop()
            self.wall_s = time.monotonic() - self._started
            self._after_teardown()
        finally:
            self.sampler.close()
        return self.result()

    def _loop(self) -> None:
        cfg = self.config
        enc = cfg.encoder
        ladder = cfg.ladder_kbps or (enc.bitrate_kbps,)
        rung = ladder.index(enc.bitrate_kbps) if enc.bitrate_kbps in ladder else 0
        total_frames = max(1, round(cfg.duration_s * enc.fps))
        references = None if cfg.baseline else self._policy(ladder[rung])[1].tracker()
        next_sample = 0.0
        next_adapt = cfg.adapt_every_s or math.inf
        next_reconnect = cfg.reconnect_every_s or math.inf
        if not cfg.baseline and cfg.draws_ahead:
            self._prefetch = Prefetcher(self.source, self.staging, range(total_frames))
        try:
            self._begin_session(ladder[rung])
            for index in range(total_frames):
                if self._stop.is_set():
                    break
                t = index / enc.fps
                self._collect()
                if t >= next_sample:
                    self._request_sample(t, references)
                    next_sample += cfg.sample_every_s
                if t >= next_adapt:
                    next_adapt += cfg.adapt_every_s or math.inf
                    rung = (rung + 1) % len(ladder)
                    if not self._adapt(ladder[rung]):
                        self._new_session_for_rate = True  # its first frame: an IDR
                        if references is not None:
                            references.reset()
                if t >= next_reconnect:
                    next_reconnect += cfg.reconnect_every_s or math.inf
                    self._end_session()
                    self._begin_session(ladder[rung])
                    self._new_session_for_rate = False  # its keyframe is the reconnect's
                    if references is not None:
                        references.reset()
                if cfg.realtime:
                    self._pace(t)
                if not self._one_frame(index, references):
                    self._replace_session(ladder[rung], t)
                    if references is not None:
                        references.reset()
        except (EncoderUnavailable, EncoderError, PoolError) as exc:
            self._fail(f"cannot go on encoding: {exc}", self.state.frames / enc.fps)
        finally:
            self._end_session()
            if self._prefetch is not None:
                self._prefetch.close()  # its leases back before the staging pool closes
            self.pool.close()
            self.staging.close()
            self.source.close()
            if not cfg.baseline:
                trim_heap()
            self._collect(settle=True)

    def _replace_session(self, kbps: int, t: float) -> None:
        """After an encoder error: the failed session is invalidated and a new one taken,
        unless `max_encoder_errors` failed in a row (then the run ends)."""
        failure = self.reports.last["encoder"]
        self._end_session(failed=failure)
        if self.state.errors_in_a_row >= self.config.max_encoder_errors:
            self._fail(f"the encoder failed {self.state.errors_in_a_row} times in a row: "
                       f"{failure}", t)  # fmt: skip
            return
        self._begin_session(kbps)

    def _fail(self, message: str, t: float) -> None:
        """A fault the run cannot go on after: stop at once, with the result to tell."""
        self.state.failure = message
        self.reports.fault("fatal", message, t)
        self._stop.set()

    def _after_teardown(self) -> None:
        """Memory once everything is closed: logged as an event, not judged as a sample (it
        is another regime: what came back)."""
        t = self.state.frames / self.config.encoder.fps
        assert self.sampler is not None
        done = self.sampler.wait((t, time.monotonic() - self._started, {}))
        if done.reading is None:
            self.reports.fault("probe", done.error or "no reading", t)
            return
        wall_s = time.monotonic() - self._started
        sample = Sample.from_reading(done.reading, t=t, wall_s=wall_s)
        self.after_teardown = sample
        fields = {k: v for k, v in sample.as_dict().items() if k not in ("t", "wall_s")}
        self.reports.write({"t": t, "event": "after_teardown", **fields}, t)

    def _prewarm(self) -> None:
        """Pay the detector's one-time costs (numpy's and LAPACK's code pages, ~2.5 MB of
        RSS here) before measuring, so that they do not read as the soak's growth."""
        prewarm(self.config.detector())

    def _adapt(self, kbps: int) -> bool:
        """The client's new rate; True when its own session took it in place (the pool's
        `change_bitrate`), False when it got another session (the baseline always does)."""
        self.state.rate_changes += 1
        if self.config.baseline or self._held is None:
            self._end_session()
            self._begin_session(kbps)
            return False
        old = self._held
        try:
            held = self.pool.change_bitrate(old, kbps, timeout=30.0)
        finally:
            if not old.active:  # released for a session at the new rate
                self.state.rate_change_keyframes += (
                    self._rate_keyframes() - self._rate_keyframes_before
                )
                self._held = self._session = None
        if held is old:
            return True
        self._held, self._session = held, held.session
        self._rate_keyframes_before = self._rate_keyframes()
        return False

    def _pace(self, t: float) -> None:
        behind = time.monotonic() - self._started - t
        if behind > 1.0 / self.config.encoder.fps:
            self.state.late += 1
        elif behind < 0:
            time.sleep(-behind)

    def _one_frame(self, index: int, references: ReferenceTracker | None) -> bool:
        """Encode frame `index`; False when the encoder failed (the frame is lost)."""
        enc = self.config.encoder
        session = self._session
        assert session is not None
        try:
            if self.config.baseline:
                image = np.empty((enc.height * 3 // 2, enc.width), np.uint8)  # new every frame
                self.source.draw(image, index)
                packets = session.encode(av.VideoFrame.from_ndarray(image, format="yuv420p"))
            else:
                lease = self._staged(index)
                if lease is None:
                    return True  # dropped for memory
                try:
                    packets = session.encode(lease.frame)
                finally:
                    lease.release(fence=session.fence())
        except EncoderError as exc:
            self.state.dropped_error += 1
            self.state.errors_in_a_row += 1
            self.reports.fault("encoder", str(exc), index / enc.fps)
            return False
        self.state.errors_in_a_row = 0
        self.state.frames += 1
        size = sum(p.size for p in packets)
        self.state.bytes_out += size
        self.state.keyframes += sum(1 for p in packets if p.is_keyframe)
        if self._new_session_for_rate and packets:
            self._new_session_for_rate = False
            self.state.rate_change_keyframes += bool(packets[0].is_keyframe)
        rung = self.state.rung_bytes.setdefault(session.config.bitrate_kbps, [0, 0])
        rung[0] += size
        rung[1] += 1
        if references is not None:
            references.on_frame(keyframe=bool(packets) and packets[0].is_keyframe)
            self.state.reference_peak = max(self.state.reference_peak, references.reference_bytes)
        if self._leak_per_frame:
            self._leaked.append(b"\x01" * self._leak_per_frame)
        return True

    def _pool_event(self, event: str, detail: Any) -> None:
        if event == "open_retry":  # survived, but the user should hear of a session cap
            self.reports.fault("open", str(detail), self.state.frames / self.config.encoder.fps)

    def _staged(self, index: int) -> StagingLease | None:
        """Frame `index` in a staging buffer (drawn ahead by the prefetcher, or now); None
        when no buffer could be had: the frame is dropped for memory."""
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
        if lease is None:
            self.state.dropped_memory += 1
            if not isinstance(error, StagingBudgetExceeded):
                self.reports.fault("staging", str(error), index / self.config.encoder.fps)
        return lease

    def _request_sample(self, t: float, references: ReferenceTracker | None) -> None:
        """Ask the sampler for a reading, with what the pools hold now; the reading comes
        back through `_collect` (a slow probe costs this sample, never a frame)."""
        pool = self.pool.stats()
        staging = self.staging.stats()
        if staging["allocation_failures"] and "staging" not in self.reports.faults:
            self.reports.fault("staging", f"{self.staging.last_allocation_error}; retried after "
                        "freeing idle buffers", t)  # fmt: skip
        ledger: dict[str, int | None] = {
            "sessions_active": int(pool["in_use"]) if not self.config.baseline else 1,
            "sessions_idle": int(pool["idle"]) if not self.config.baseline else 0,
            "reference_bytes": references.reference_bytes if references is not None else None,
            "staging_in_use_bytes": staging["in_use_bytes"],
            "staging_idle_bytes": staging["idle_bytes"],
            "frames_encoded": self.state.frames,
            "frames_dropped_memory": self.state.dropped_memory,
            "frames_late": self.state.late,
        }
        assert self.sampler is not None
        if not self.sampler.request((t, time.monotonic() - self._started, ledger)):
            self.state.samples_skipped += 1

    def _collect(self, settle: bool = False) -> None:
        """Take in the readings that finished (with `settle`, wait for the one in flight)."""
        assert self.sampler is not None
        for done in self.sampler.settle() if settle else self.sampler.poll():
            t, wall_s, ledger = done.context
            if done.reading is None:
                self.reports.fault("probe", done.error or "no reading", t)
            else:
                self._take(done.reading, t, wall_s, ledger)

    def _take(
        self, reading: Reading, t: float, wall_s: float, ledger: dict[str, int | None]
    ) -> None:
        sample = Sample.from_reading(reading, t=t, wall_s=wall_s, **ledger)
        if self.tracker.metric is None:
            self.tracker.metric = choose_process_metric(sample)
        alert = self.tracker.add(sample)
        value = sample.get(self.tracker.metric or "")
        if value is not None and self._points < self._series.shape[1]:
            self._series[:, self._points] = (t, value)
            self._points += 1
        self.reports.write(sample.as_dict(), t)
        if alert is not None:
            self.reports.write(alert.as_dict(), t)
            self.state.alerts.append(alert)
        self.state.last_sample = sample
        if self.on_sample is not None:
            self.on_sample(self, sample)

    # -- the verdict ----------------------------------------------------------------------

    @property
    def times(self) -> npt.NDArray[np.float64]:
        return self._series[0, : self._points]

    @property
    def values(self) -> npt.NDArray[np.float64]:
        return self._series[1, : self._points]

    def trend(self) -> Trend:
        budget = self.state.last_sample.device_total_bytes if self.state.last_sample else None
        metric = self.tracker.metric
        return detect_leak(
            self.times, self.values, self.config.detector(),
            budget if metric != "host_rss_bytes" else None,
        )  # fmt: skip

    def _rungs(self) -> list[dict[str, Any]]:
        """Each rate asked, over all its turns: frames, bytes and the rate measured."""
        fps = self.config.encoder.fps
        return [
            {"kbps": kbps, "frames": frames, "bytes": size,
             "measured_kbps": size * 8 * fps / frames / 1000 if frames else None}
            for kbps, (size, frames) in sorted(self.state.rung_bytes.items())
        ]  # fmt: skip

    def result(self) -> dict[str, Any]:
        cfg, enc, state = self.config, self.config.encoder, self.state
        trend = self.final_trend = self.trend()
        pool = self.pool.stats()
        # sessions asked for: each connect, reconnect and rate change (one served in place
        # on the client's own session counts as served warm)
        acquisitions = state.baseline_acquisitions if cfg.baseline else int(pool["requests"])
        reuse = 0.0 if cfg.baseline else float(pool["reuse_rate"])
        created = state.baseline_sessions if cfg.baseline else int(pool["created"])
        heap = heap_stats()
        result: dict[str, Any] = {
            "codec": enc.codec,
            "encoder": self.encoder_name,
            "encoder_reason": self.encoder_reason,
            "hardware": self.hardware,
            "resolution": f"{enc.width}x{enc.height}",
            "fps_target": enc.fps,
            "bitrate_kbps": enc.bitrate_kbps,
            "ladder_kbps": list(cfg.ladder_kbps),
            "baseline": cfg.baseline,
            "realtime": cfg.realtime,
            "stream_s": state.frames / enc.fps,
            "wall_s": self.wall_s,
            "frames_encoded": state.frames,
            "fps": state.frames / self.wall_s if self.wall_s > 0 else None,
            "bytes_out": state.bytes_out,
            "frames_dropped_memory": state.dropped_memory,
            "frames_dropped_error": state.dropped_error,
            "frames_late": state.late,
            "metric": self.tracker.metric,
            "peak_bytes": trend.peak_bytes,
            "growth_bytes_per_hour": trend.slope_bytes_per_hour,
            "growth_ci_bytes_per_hour": (
                list(trend.slope_ci_bytes_per_hour) if trend.slope_ci_bytes_per_hour else None
            ),
            "leak_verdict": trend.verdict,
            "first_alert_t": trend.first_alert_t,
            "leak_reason": trend.reason,
            "likely_source": state.alerts[-1].likely_source if state.alerts else None,
            "sessions_created": created,
            "acquisitions": acquisitions,
            "session_reuse_rate": reuse if acquisitions > 1 else None,
            "rate_changes": state.rate_changes,
            "adapted_in_place": 0 if cfg.baseline else int(pool["adapted_in_place"]),
            "keyframes": state.keyframes,
            "rate_change_keyframes": state.rate_change_keyframes,
            "max_idle_bytes": None if cfg.baseline else self.pool.max_idle_bytes,
            "rungs": self._rungs(),
            "reference_peak_bytes": state.reference_peak if not cfg.baseline else None,
            "reference_peak_basis": None if cfg.baseline else REFERENCES_MODELLED,
            "staging_peak_bytes": self.staging.stats()["peak_bytes"] if not cfg.baseline else None,
            "heap_free_bytes": heap.free_bytes if heap else None,
            "after_teardown_bytes": (
                self.after_teardown.get(self.tracker.metric or "") if self.after_teardown else None
            ),
            "interrupted": state.stop_reason if state.failure is None else None,
            "failure": state.failure,
            "faults": self.reports.faults,
            "samples": len(self.times),
            "samples_skipped": state.samples_skipped,
            "log_error": self.log.error if self.log is not None else None,
        }
        result["growth_threshold_bytes_per_hour"] = (
            cfg.criteria.max_growth_bytes_per_hour / cfg.time_scale
        )
        result["criteria"] = judge(result, cfg.criteria, cfg.time_scale)
        result["verdict"] = "pass" if all(c["passed"] for c in result["criteria"]) else "fail"
        return result
