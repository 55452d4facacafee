"""The soak: the plan's long-session test on a real encoder, judged against its success
criteria. `SoakRunner` is its scheduler: sample, adapt, reconnect, pace, encode.

A source draws moving frames; a `Pipeline` (vramguard.pipelines) gets the sessions and the
frame buffers: managed (staging pool, session pool, prefetcher, reference policy) or the
`baseline`'s unmanaged way (a new encoder per change, a new buffer per frame), chosen once
here and never asked about again. Every sample interval the `Recorder` takes a probe reading
with the pipeline's ledger into the tracker and the JSONL log. All soak times (duration,
sampling, adaptation, reconnects) are stream time, frames / fps: without `realtime` the
encoder runs as fast as it can, so 24 hours of stream take far less wall time.

Probes are read on a sampler thread under a time limit (a hung probe never stalls the
encoder). Faults are survived where they can be and reported once each (a log event, the
`on_fault` callback, and `faults` in the result): an encoder that raises is invalidated and
replaced (the frame counted in `frames_dropped_error`; `max_encoder_errors` in a row end the
run), a staging allocation that fails drops the frame for memory, a probe that raises or
hangs costs its sample, a log that cannot be written keeps its whole lines and the run goes
on. An encoder that cannot be opened mid-run ends the run with `failure` set, the result
written and the criterion "run completed" missed. See docs/reliability.md.

Teardown order, at the end, on a stop request or a fatal fault: the session in use is
released (invalidated if it failed); the pipeline is closed (the prefetcher stopped and its
frames released, the session pool closed with its idle sessions, the staging pool closed,
the source closed, the heap trimmed); the reading in flight is awaited (within its time
limit); a last reading after teardown is taken; the sampler is stopped; then the caller
writes the result and closes the log.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from vramguard import probes
from vramguard.criteria import Criteria, Measures, judge
from vramguard.encode import (
    EncoderConfig,
    EncoderError,
    EncoderSession,
    EncoderUnavailable,
    open_encoder,
    warm_session_bytes,
)
from vramguard.heap import heap_stats
from vramguard.pipelines import (
    BaselinePipeline,
    ManagedPipeline,
    ManagedSettings,
    Pipeline,
    PipelineLedger,
)
from vramguard.pools.references import DEFAULT_BUDGET_BYTES
from vramguard.pools.sessions import PoolError
from vramguard.probes import Reading
from vramguard.recorder import Recorder
from vramguard.samplelog import SampleLogWriter
from vramguard.sampler import DEFAULT_TIME_LIMIT_S
from vramguard.soakresult import RungResult, SoakResult
from vramguard.sources import SyntheticSource, make_source
from vramguard.tracker import MemoryTracker, Sample, attribute
from vramguard.trend import HOUR, DetectorConfig, Trend, prewarm

__all__ = ["Criteria", "SoakConfig", "SoakResult", "SoakRunner", "SyntheticSource", "judge"]

#: test-only seam, read by the commands (soak, churn) and handed to the runners' constructors:
#: bytes kept per frame, to prove a leak makes the run fail (not a user flag)
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

    def managed_settings(self) -> ManagedSettings:
        """The managed pipeline's policies, defaults resolved."""
        enc = self.encoder
        ladder = self.ladder_kbps or (enc.bitrate_kbps,)
        return ManagedSettings(
            max_idle=self.max_idle if self.max_idle is not None else len(ladder) + 1,
            max_sessions=self.max_sessions,
            idle_ttl_s=max(300.0, 2 * (self.adapt_every_s or 0) * len(ladder)),
            max_idle_bytes=(
                self.max_idle_bytes if self.max_idle_bytes is not None
                else warm_session_bytes(enc)
            ),
            reference_budget_bytes=self.reference_budget_bytes,
            staging_budget_bytes=self.staging_budget_bytes,
            draws_ahead=self.draws_ahead,
        )  # fmt: skip

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
    """What a soak has done so far: counters and how it ended."""

    frames: int = 0
    dropped_memory: int = 0
    dropped_error: int = 0
    errors_in_a_row: int = 0
    samples_skipped: int = 0
    late: int = 0
    bytes_out: int = 0
    keyframes: int = 0
    # keyframes a rate change caused: a new session's first, or one an encoder that changed
    # in place added (EncoderSession.stats: nvenc's IDR; never libx264)
    rate_change_keyframes: int = 0
    rate_changes: int = 0
    rung_bytes: dict[int, list[int]] = field(default_factory=dict)  # kbps -> [bytes, frames]
    stop_reason: str | None = None
    failure: str | None = None  # the fault that ended the run early


def _rate_keyframes(session: EncoderSession | None) -> int:
    stats = getattr(session, "stats", None)
    return int(getattr(stats, "keyframes_after_rate_change", 0))


class SoakRunner:
    """Runs one soak. `stop()` (from a signal handler, say) ends it cleanly at the next frame.
    Seams: `open_session` opens an encoder, `read` takes a probe reading of this process;
    `leak_bytes_per_frame` (tests only) keeps bytes per frame, to prove a leak fails it."""

    def __init__(
        self,
        config: SoakConfig,
        log: SampleLogWriter | None = None,
        on_sample: Callable[[SoakRunner, Sample], None] | None = None,
        open_session: Callable[[EncoderConfig], Any] = open_encoder,
        on_fault: Callable[[str, str], None] | None = None,
        leak_bytes_per_frame: int = 0,
        read: Callable[[], Reading] = probes.read,
    ) -> None:
        self.config = config
        self.log = log
        self._open = open_session
        self._stop = threading.Event()
        self._started = 0.0
        self.state = SoakState()
        self.tracker = MemoryTracker(detector_config=config.detector())
        hear = None if on_sample is None else (lambda sample: on_sample(self, sample))
        # preallocated, like the tracker's ring: memory must not grow as the soak samples
        capacity = int(config.duration_s / config.sample_every_s) + 4
        self.recorder = Recorder(read, self.tracker, log, on_sample=hear,
                                 on_fault=on_fault, time_limit_s=config.probe_time_limit_s,
                                 capacity=capacity)  # fmt: skip
        self.reports = self.recorder.reports
        self.encoder_name: str | None = None
        self.encoder_reason: str | None = None
        self.hardware = False
        self.wall_s = 0.0
        self.after_teardown: Sample | None = None
        self.final_trend: Trend | None = None  # the verdict's trend, once result() ran
        self._marked: tuple[EncoderSession | None, int] | None = None
        self._leak_per_frame = leak_bytes_per_frame
        self._leaked: list[bytes] = []
        self.pipeline = self._pipeline()

    def _pipeline(self) -> Pipeline:
        """The one place a baseline run differs: its pipeline."""
        cfg, enc = self.config, self.config.encoder
        source = make_source(cfg.source, enc.width, enc.height, enc.fps)
        if cfg.baseline:
            return BaselinePipeline(source, cfg.ladder_kbps, self._open)
        return ManagedPipeline(source, cfg.ladder_kbps, cfg.managed_settings(), self._open,
                               self._pipeline_fault)  # fmt: skip

    def _pipeline_fault(self, kind: str, message: str, t: float | None) -> None:
        now = self.state.frames / self.config.encoder.fps
        self.recorder.fault(kind, message, now if t is None else t)

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

    def _begin(self, kbps: int) -> None:
        self.pipeline.begin(kbps)
        self._mark()

    def _mark(self) -> None:
        """Remember the held session's rate-change keyframes when it was taken."""
        session = self.pipeline.session
        self._marked = (session, _rate_keyframes(session))

    def _account(self) -> None:
        """Count the rate-change keyframes the held session added while it was held."""
        if self._marked is not None:
            session, before = self._marked
            self.state.rate_change_keyframes += _rate_keyframes(session) - before
            self._marked = None

    def _end(self, failed: str | None = None) -> None:
        self._account()
        self.pipeline.end(failed)

    def _adapt(self, kbps: int) -> bool:
        """The client's new rate; True when its own session took it in place."""
        self.state.rate_changes += 1
        in_place = self.pipeline.adapt(kbps)
        if not in_place:
            self._account()
            self._mark()
        return in_place

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> SoakResult:
        try:
            encoder = self._resolve_encoder()
        except BaseException:
            self.pipeline.close()  # no encoder here: the source and the pools go at once
            raise
        prewarm(self.config.detector())  # numpy's and LAPACK's one-time costs, before measuring
        self._started = time.monotonic()
        try:
            self._loop(encoder)
            self.wall_s = time.monotonic() - self._started
            self._after_teardown()
        finally:
            self.recorder.close()
        return self.result()

    def _loop(self, encoder: EncoderConfig) -> None:
        cfg, fps = self.config, self.config.encoder.fps
        ladder = cfg.ladder_kbps or (encoder.bitrate_kbps,)
        rung = ladder.index(encoder.bitrate_kbps) if encoder.bitrate_kbps in ladder else 0
        total_frames = max(1, round(cfg.duration_s * fps))
        next_sample = 0.0
        next_adapt = cfg.adapt_every_s or math.inf
        next_reconnect = cfg.reconnect_every_s or math.inf
        new_for_rate = False  # a session taken for a rate change, no frame yet: an IDR
        try:
            self.pipeline.start(encoder, total_frames)
            self._begin(ladder[rung])
            for index in range(total_frames):
                if self._stop.is_set():
                    break
                t = index / fps
                self.recorder.collect()
                if t >= next_sample:
                    self._request_sample(t)
                    next_sample += cfg.sample_every_s
                if t >= next_adapt:
                    next_adapt += cfg.adapt_every_s or math.inf
                    rung = (rung + 1) % len(ladder)
                    new_for_rate = not self._adapt(ladder[rung])
                if t >= next_reconnect:
                    next_reconnect += cfg.reconnect_every_s or math.inf
                    self._end()
                    self._begin(ladder[rung])
                    new_for_rate = False  # its keyframe is the reconnect's
                if cfg.realtime:
                    self._pace(t)
                new_for_rate = self._one_frame(index, ladder[rung], new_for_rate)
        except (EncoderUnavailable, EncoderError, PoolError) as exc:
            self._fail(f"cannot go on encoding: {exc}", self.state.frames / fps)
        finally:
            self._end()
            self.pipeline.close()
            self.recorder.collect(settle=True)

    def _one_frame(self, index: int, kbps: int, new_for_rate: bool) -> bool:
        """Encode frame `index`, replacing the session when it fails; returns whether the
        session is still one taken for a rate change that has not yet sent a frame."""
        encoded = self._encode(index, new_for_rate)
        if encoded is None:
            self._replace_session(kbps, index / self.config.encoder.fps)
            return False
        return new_for_rate and not encoded

    def _replace_session(self, kbps: int, t: float) -> None:
        """After an encoder error: the failed session is invalidated and a new one taken,
        unless `max_encoder_errors` failed in a row (then the run ends)."""
        failure = self.reports.last["encoder"]
        self._end(failed=failure)
        if self.state.errors_in_a_row >= self.config.max_encoder_errors:
            self._fail(f"the encoder failed {self.state.errors_in_a_row} times in a row: "
                       f"{failure}", t)  # fmt: skip
            return
        self._begin(kbps)

    def _fail(self, message: str, t: float) -> None:
        """A fault the run cannot go on after: stop at once, with the result to tell."""
        self.state.failure = message
        self.recorder.fault("fatal", message, t)
        self._stop.set()

    def _after_teardown(self) -> None:
        """Memory once everything is closed: logged as an event, not judged as a sample (it
        is another regime: what came back)."""
        t = self.state.frames / self.config.encoder.fps
        sample = self.recorder.read_now(t, time.monotonic() - self._started)
        if sample is None:
            return
        self.after_teardown = sample
        fields = {k: v for k, v in sample.as_dict().items() if k not in ("t", "wall_s")}
        self.recorder.write({"t": t, "event": "after_teardown", **fields}, t)

    def _pace(self, t: float) -> None:
        behind = time.monotonic() - self._started - t
        if behind > 1.0 / self.config.encoder.fps:
            self.state.late += 1
        elif behind < 0:
            time.sleep(-behind)

    def _encode(self, index: int, new_for_rate: bool) -> bool | None:
        """Frame `index` through the pipeline, counted. None when the encoder failed (the
        frame is lost); else whether the session sent packets (False: none yet, or the
        frame was dropped for memory)."""
        state = self.state
        try:
            packets = self.pipeline.encode(index)
        except EncoderError as exc:
            state.dropped_error += 1
            state.errors_in_a_row += 1
            self.recorder.fault("encoder", str(exc), index / self.config.encoder.fps)
            return None
        if packets is None:
            state.dropped_memory += 1
            return False
        state.errors_in_a_row = 0
        state.frames += 1
        size = sum(p.size for p in packets)
        state.bytes_out += size
        state.keyframes += sum(1 for p in packets if p.is_keyframe)
        if new_for_rate and packets:
            state.rate_change_keyframes += bool(packets[0].is_keyframe)
        session = self.pipeline.session
        assert session is not None
        rung = state.rung_bytes.setdefault(session.config.bitrate_kbps, [0, 0])
        rung[0] += size
        rung[1] += 1
        if self._leak_per_frame:
            self._leaked.append(b"\x01" * self._leak_per_frame)
        return bool(packets)

    def _request_sample(self, t: float) -> None:
        """Ask for a reading with what the pipeline holds now; it comes back through
        `recorder.collect` (a slow probe costs this sample, never a frame)."""
        ledger = {
            **self.pipeline.sample_ledger(t),
            "frames_encoded": self.state.frames,
            "frames_dropped_memory": self.state.dropped_memory,
            "frames_late": self.state.late,
        }
        if not self.recorder.request(t, time.monotonic() - self._started, ledger):
            self.state.samples_skipped += 1

    # -- the verdict ----------------------------------------------------------------------

    @property
    def times(self) -> npt.NDArray[np.float64]:
        return self.recorder.series.times

    @property
    def values(self) -> npt.NDArray[np.float64]:
        return self.recorder.series.values

    def trend(self) -> Trend:
        return self.recorder.verdict(self.config.detector())

    def _rungs(self) -> tuple[RungResult, ...]:
        """Each rate asked, over all its turns: frames, bytes and the rate measured."""
        fps = self.config.encoder.fps
        return tuple(
            RungResult(kbps, frames, size,
                       size * 8 * fps / frames / 1000 if frames else None)
            for kbps, (size, frames) in sorted(self.state.rung_bytes.items())
        )  # fmt: skip

    def result(self) -> SoakResult:
        cfg, state = self.config, self.state
        trend = self.final_trend = self.trend()
        ledger = self.pipeline.ledger()
        measures = Measures(
            metric=self.tracker.metric, peak_bytes=trend.peak_bytes,
            growth_bytes_per_hour=trend.slope_bytes_per_hour,
            growth_ci_bytes_per_hour=trend.slope_ci_bytes_per_hour, leak_verdict=trend.verdict,
            session_reuse_rate=ledger.reuse_rate if ledger.acquisitions > 1 else None,
            frames_dropped_memory=state.dropped_memory,
            reference_peak_bytes=ledger.reference_peak_bytes, failure=state.failure,
        )  # fmt: skip
        criteria = judge(measures, cfg.criteria, cfg.time_scale)
        return SoakResult(
            **self._run_fields(), **self._measured_fields(measures, trend),
            **self._pipeline_fields(ledger),
            likely_source=self._likely_source(trend),
            interrupted=state.stop_reason if state.failure is None else None,
            failure=state.failure, faults={k: dict(v) for k, v in self.recorder.faults.items()},
            samples=len(self.times), samples_skipped=state.samples_skipped,
            log_error=self.log.error if self.log is not None else None,
            growth_threshold_bytes_per_hour=cfg.criteria.max_growth_bytes_per_hour
            / cfg.time_scale,
            criteria=criteria, verdict="pass" if all(c.passed for c in criteria) else "fail",
        )  # fmt: skip

    def _likely_source(self, trend: Trend) -> str | None:
        """The last alert's source; for a leak the replay found and the online detector did
        not alarm on (its samples skipped on a loaded machine), the samples' own attribution."""
        alerts, metric = self.tracker.alerts, self.tracker.metric
        if alerts:
            return alerts[-1].likely_source
        if trend.verdict != "leak" or metric is None or not self.tracker.samples:
            return None
        return attribute(list(self.tracker.samples), metric, self.tracker.samples[0].t)

    def _run_fields(self) -> dict[str, Any]:
        cfg, enc, state = self.config, self.config.encoder, self.state
        return {
            "codec": enc.codec, "encoder": self.encoder_name,
            "encoder_reason": self.encoder_reason, "hardware": self.hardware,
            "resolution": f"{enc.width}x{enc.height}", "fps_target": enc.fps,
            "bitrate_kbps": enc.bitrate_kbps, "ladder_kbps": tuple(cfg.ladder_kbps),
            "baseline": cfg.baseline, "realtime": cfg.realtime,
            "stream_s": state.frames / enc.fps, "wall_s": self.wall_s,
            "frames_encoded": state.frames,
            "fps": state.frames / self.wall_s if self.wall_s > 0 else None,
            "bytes_out": state.bytes_out, "frames_dropped_memory": state.dropped_memory,
            "frames_dropped_error": state.dropped_error, "frames_late": state.late,
            "rate_changes": state.rate_changes, "keyframes": state.keyframes,
            "rate_change_keyframes": state.rate_change_keyframes, "rungs": self._rungs(),
        }  # fmt: skip

    def _measured_fields(self, measures: Measures, trend: Trend) -> dict[str, Any]:
        heap = heap_stats()
        metric = self.tracker.metric or ""
        return {
            "metric": measures.metric, "peak_bytes": measures.peak_bytes,
            "growth_bytes_per_hour": measures.growth_bytes_per_hour,
            "growth_ci_bytes_per_hour": measures.growth_ci_bytes_per_hour,
            "leak_verdict": trend.verdict, "first_alert_t": trend.first_alert_t,
            "leak_reason": trend.reason,
            "heap_free_bytes": heap.free_bytes if heap else None,
            "after_teardown_bytes": (
                self.after_teardown.get(metric) if self.after_teardown else None
            ),
        }  # fmt: skip

    @staticmethod
    def _pipeline_fields(ledger: PipelineLedger) -> dict[str, Any]:
        return {
            "sessions_created": ledger.sessions_created, "acquisitions": ledger.acquisitions,
            "session_reuse_rate": ledger.reuse_rate if ledger.acquisitions > 1 else None,
            "adapted_in_place": ledger.adapted_in_place, "max_idle_bytes": ledger.max_idle_bytes,
            "reference_peak_bytes": ledger.reference_peak_bytes,
            "reference_peak_basis": ledger.reference_peak_basis,
            "staging_peak_bytes": ledger.staging_peak_bytes,
        }  # fmt: skip
