"""Samples, a bounded history of them, and leak alerts that say where the growth comes from.

A `Sample` joins what the probes measured with what our own pools hold (the ledger), so a
`LeakAlert` can name the component whose growth explains the leak: reference frames,
staging buffers, retained heap, sessions, or "unaccounted" (growth none of ours explains).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from vramguard.fields import FIELDS, NAMES
from vramguard.probes import Reading
from vramguard.trend import HOUR, Alarm, DetectorConfig, LeakDetector, Trend

#: metrics a verdict can be about, best first (what `metric=None` picks from)
PREFERRED_METRICS = ("process_gpu_bytes", "device_used_bytes", "host_rss_bytes")


@dataclass(frozen=True, slots=True)
class Sample:
    """One moment of a run. Sizes in bytes; None where not measured. `t` is stream time."""

    t: float
    wall_s: float | None = None
    process_gpu_bytes: int | None = None
    device_used_bytes: int | None = None
    device_total_bytes: int | None = None
    encoder_sessions: int | None = None
    host_rss_bytes: int | None = None
    host_uss_bytes: int | None = None
    heap_in_use_bytes: int | None = None
    heap_free_bytes: int | None = None
    open_handles: int | None = None
    threads: int | None = None
    sessions_active: int | None = None
    sessions_idle: int | None = None
    reference_bytes: int | None = None
    staging_in_use_bytes: int | None = None
    staging_idle_bytes: int | None = None
    frames_encoded: int | None = None
    frames_dropped_memory: int | None = None
    frames_late: int | None = None
    load: float | None = None  # the load signal `run`/`watch` read (sessions, clients)

    @classmethod
    def from_reading(
        cls, reading: Reading, t: float, wall_s: float | None = None, **ledger: int | None
    ) -> Sample:
        """A sample from a probe reading plus what the pools report (`ledger`)."""
        measured = {k: v for k, v in reading.values().items() if k in _FIELD_NAMES}
        return cls(t=t, wall_s=wall_s, **measured, **ledger)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sample:
        """From a log line: unknown keys are ignored, non-numbers become None."""
        values: dict[str, Any] = {}
        for name in _FIELD_NAMES:
            value = data.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if not math.isfinite(value):
                continue
            values[name] = value if name in _FLOAT_FIELDS else int(value)
        if "t" not in values:
            raise ValueError("a sample needs a numeric 't'")
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """The fields that were measured, for a log line."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def get(self, name: str) -> float | None:
        value = getattr(self, name, None)
        return None if value is None else float(value)


_FIELD_NAMES = NAMES
_FLOAT_FIELDS = tuple(f.name for f in FIELDS if f.is_float)
SAMPLE_FIELDS = _FIELD_NAMES
if tuple(f.name for f in fields(Sample)) != NAMES:  # pragma: no cover - a developer's slip
    raise ImportError("Sample's fields differ from vramguard.fields.FIELDS: add it to both")


@dataclass(frozen=True, slots=True)
class LeakAlert:
    """The detector alarmed: how fast, how sure, how long until memory runs out, and why."""

    t: float
    metric: str
    kind: str  # "slope" or "staircase"
    slope_bytes_per_hour: float
    slope_ci_bytes_per_hour: tuple[float, float]
    level_bytes: float
    time_to_exhaustion_s: float | None
    likely_source: str  # reference frames, staging, retained heap, sessions, unaccounted
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"event": "leak_alert", **asdict(self)}


def choose_metric(available: Iterable[str]) -> str | None:
    """The best metric among those present: per-process GPU, device GPU, host RSS."""
    present = set(available)
    return next((m for m in PREFERRED_METRICS if m in present), None)


def budget_for(metric: str | None, sample: Sample | None) -> int | None:
    """The memory a metric can grow into: the device's size, unless it is host RSS."""
    if sample is None or metric == "host_rss_bytes":
        return None
    return sample.device_total_bytes


def choose_process_metric(sample: Sample) -> str | None:
    """What to judge of one process: its GPU memory where a probe has it, else its RSS
    (the device's use includes other processes)."""
    return next(
        (m for m in ("process_gpu_bytes", "host_rss_bytes") if sample.get(m) is not None), None
    )


def _level(values: list[float]) -> float:
    return float(np.median(values)) if values else math.nan


def attribute(samples: list[Sample], metric: str, since_t: float) -> str:
    """The component whose growth since `since_t` explains at least half the metric's."""
    window = [s for s in samples if s.t >= since_t]
    if len(window) < 4:
        return "unaccounted"
    head, tail = window[: max(2, len(window) // 5)], window[-max(2, len(window) // 5) :]

    def growth(*names: str) -> float | None:
        def total(s: Sample) -> float | None:
            parts = [p for n in names if (p := s.get(n)) is not None]
            return sum(parts) if parts else None

        first = [v for s in head if (v := total(s)) is not None]
        last = [v for s in tail if (v := total(s)) is not None]
        return _level(last) - _level(first) if first and last else None

    grown = growth(metric)
    if grown is None or grown <= 0:
        return "unaccounted"
    components = {
        "reference frames": growth("reference_bytes"),
        "staging": growth("staging_in_use_bytes", "staging_idle_bytes"),
    }
    if metric.startswith("host_"):
        components["retained heap"] = growth("heap_free_bytes")
    found = {k: v for k, v in components.items() if v is not None and v >= 0.5 * grown}
    if found:
        return max(found, key=lambda k: found[k] or 0.0)
    sessions = growth("sessions_active", "sessions_idle")
    if sessions is not None and sessions >= 1:
        return "sessions"
    return "unaccounted"


class SampleRing:
    """The last `capacity` samples in one preallocated array, written in place: the
    tracker's own memory is the same on the first sample as on the millionth, so it does
    not show up as growth in the process it watches."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._rows = np.full((capacity, len(_FIELD_NAMES)), np.nan)  # touched now, not later
        self._next = 0
        self._count = 0

    def append(self, sample: Sample) -> None:
        row = self._rows[self._next]
        for i, name in enumerate(_FIELD_NAMES):
            value = getattr(sample, name)
            row[i] = np.nan if value is None else value
        self._next = (self._next + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def _row(self, index: int) -> Sample:
        row = self._rows[index]
        return Sample.from_dict(
            {name: v for name, v in zip(_FIELD_NAMES, row.tolist(), strict=True) if v == v}
        )

    def __getitem__(self, index: int) -> Sample:
        if not -self._count <= index < self._count:
            raise IndexError(index)
        position = index % self._count
        start = (self._next - self._count) % self.capacity
        return self._row((start + position) % self.capacity)

    def __iter__(self) -> Iterator[Sample]:
        start = (self._next - self._count) % self.capacity
        for k in range(self._count):
            yield self._row((start + k) % self.capacity)


class MemoryTracker:
    """A bounded history of samples, their peak and fragmentation, and the online detector.

    `add(sample)` returns a `LeakAlert` when the detector starts alarming. The history keeps
    the last `max_samples` (1440: a day at one a minute); the detector keeps its own bounded
    buckets, so memory stays flat however long the run.
    """

    def __init__(
        self,
        max_samples: int = 1440,
        metric: str | None = None,
        budget_bytes: int | None = None,
        detector_config: DetectorConfig | None = None,
        load_field: str | None = None,
    ) -> None:
        if max_samples < 2:
            raise ValueError(f"max_samples must be at least 2, not {max_samples}")
        self.samples = SampleRing(max_samples)
        self.metric = metric
        self.budget_bytes = budget_bytes
        self.detector = LeakDetector(detector_config or DetectorConfig())
        self.alerts: list[LeakAlert] = []
        self.peaks: dict[str, float] = {}
        self.load_field = load_field  # the sample field the detector reads load from

    def add(self, sample: Sample) -> LeakAlert | None:
        self.samples.append(sample)
        for name in _FIELD_NAMES[2:]:
            value = sample.get(name)
            if value is not None and value > self.peaks.get(name, -math.inf):
                self.peaks[name] = value
        if self.metric is None:
            self.metric = choose_metric(k for k in PREFERRED_METRICS if sample.get(k) is not None)
        value = sample.get(self.metric) if self.metric else None
        if value is None:
            return None
        load = sample.get(self.load_field) if self.load_field else None
        alarm = self.detector.update(sample.t, value, load)
        if alarm is None:
            return None
        alert = self._alert(alarm)
        self.alerts.append(alert)
        return alert

    def _alert(self, alarm: Alarm) -> LeakAlert:
        assert self.metric is not None
        budget = self.budget_bytes
        if budget is None:
            budget = budget_for(self.metric, self.samples[-1] if self.samples else None)
        exhaustion = None
        if budget is not None and alarm.slope_bytes_per_hour > 0:
            exhaustion = max(0.0, (budget - alarm.level_bytes) / alarm.slope_bytes_per_hour * HOUR)
        return LeakAlert(
            t=alarm.t,
            metric=self.metric,
            kind=alarm.kind,
            slope_bytes_per_hour=alarm.slope_bytes_per_hour,
            slope_ci_bytes_per_hour=alarm.ci_bytes_per_hour,
            level_bytes=alarm.level_bytes,
            time_to_exhaustion_s=exhaustion,
            likely_source=attribute(list(self.samples), self.metric, alarm.t - alarm.window_s),
            reason=alarm.reason,
        )

    @property
    def peak(self) -> float | None:
        """The peak of the tracked metric."""
        return self.peaks.get(self.metric) if self.metric else None

    def fragmentation(self) -> dict[str, float | None]:
        """Idle share of pooled staging memory, and free share of the C heap (0..1)."""
        if not self.samples:
            return {"pool_idle_ratio": None, "heap_free_ratio": None}
        last = self.samples[-1]

        def ratio(part: float | None, other: float | None) -> float | None:
            if part is None or other is None or part + other <= 0:
                return None
            return part / (part + other)

        return {
            "pool_idle_ratio": ratio(
                last.get("staging_idle_bytes"), last.get("staging_in_use_bytes")
            ),
            "heap_free_ratio": ratio(last.get("heap_free_bytes"), last.get("heap_in_use_bytes")),
        }

    def trend(self) -> Trend:
        """The detector's view now (no replay): the last line fit and any alarm so far."""
        detector = self.detector
        fit = detector.last_fit
        duration = (self.samples[-1].t - self.samples[0].t) if self.samples else 0.0
        first = self.alerts[0].t - (detector.t0 or 0.0) if self.alerts else None
        if fit is None and not self.alerts:
            verdict = "insufficient-data"
        else:
            verdict = "leak" if self.alerts else "stable"
        return Trend(
            verdict=verdict,  # type: ignore[arg-type]
            slope_bytes_per_hour=None if fit is None else fit.slope_per_s * HOUR,
            slope_ci_bytes_per_hour=None if fit is None else fit.ci_per_hour(),
            first_alert_t=first,
            peak_bytes=self.peak,
            time_to_exhaustion_s=self.alerts[-1].time_to_exhaustion_s if self.alerts else None,
            samples=detector.samples,
            duration_s=duration,
            steps=tuple(detector.steps),
            alarms=len(self.alerts),
            reason=self.alerts[-1].reason if self.alerts else "",
        )
