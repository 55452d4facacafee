"""The leak detector: an online test for memory that keeps growing, robust to noise.

The plan's detector (least squares over the last 10 samples, alarm above 1 MB/min) alarms
on noise and cannot see 10-20 MB/h. This one works on one-minute buckets and asks two
questions at each bucket:

1. **Growth.** Over the last `history_s` (8 h), does memory bend upward and keep
   climbing? The detector fits a level plus a ramp that starts at each of several ages
   (`ramp_ages_s`, 1 h to 6 h ago, and the window's start: a plain slope), so a leak that
   began 2 h ago is tested against the flat history before it: that is what makes slow
   leaks visible early. The ramp's standard error assumes AR(1) noise (the residuals'
   variance and lag-1 autocorrelation, bias-corrected), and its long-run variance is at
   least the median of the last day's, so slow drift, GC sawtooth and a quiet stretch do
   not pass for a trend. An alarm needs `z >= z_alarm` (plus a margin while the noise is
   still being learned), a ramp of at least `min_slope_bytes_per_hour`, and
   `confirm_buckets` buckets in a row.
2. **Staircase.** Sharp upward steps (the median of the next few buckets above the median
   of the previous few by several noise widths) enter the fit as level shifts, so a pool
   that grows once is not a leak. They are counted: `staircase_steps` upward steps within
   `staircase_window_s` that are not given back is a leak (memory that keeps setting new
   highs). Downward steps (a GC, a pool purge) stay in the data.

The first `warmup_s` of a series (caches filling, pools warming) is left out.

Cost per bucket is O(history) in numpy (480 buckets at most); samples inside a bucket cost
O(1). `detect_leak(times, values)` replays the same online detector over a whole series and
adds a verdict over all of it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from vramguard.units import format_duration

HOUR = 3600.0
MB = 1e6

Verdict = Literal["leak", "stable", "insufficient-data"]


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Every policy of the detector, named; the defaults meet the targets in bench/RESULTS.md."""

    bucket_s: float = 60.0
    history_s: float = 8 * HOUR
    ramp_ages_s: tuple[float, ...] = (1 * HOUR, 1.5 * HOUR, 2 * HOUR, 3 * HOUR, 4 * HOUR, 6 * HOUR)
    min_fit_s: float = 2 * HOUR  # data needed after warm-up before growth is judged
    noise_history: int = 24  # long-run variances kept, one per noise_record_every_s
    noise_record_every_s: float = 1 * HOUR
    learning_z_margin: float = 1.0  # added to z_alarm until three noise records exist
    z_alarm: float = 5.0
    min_slope_bytes_per_hour: float = 1 * MB
    confirm_buckets: int = 3
    rearm_buckets: int = 60  # quiet buckets that end an alarm episode
    warmup_s: float = 1800.0
    min_points: int = 20
    step_buckets: int = 5
    step_sigmas: float = 6.0
    step_sharpness: float = 0.7  # share of a step that must happen within two buckets
    step_reference_buckets: int = 180  # noise width for steps measured over this many
    min_step_bytes: float = 0.5 * MB
    staircase_steps: int = 3
    staircase_window_s: float = 24 * HOUR
    staircase_kept_share: float = 0.5  # share of the steps' rise still held
    min_duration_s: float = 1800.0  # shorter series are insufficient data

    def scaled(self, history_s: float) -> DetectorConfig:
        """The same detector on another time scale: every duration times history_s / 8 h.

        For short runs (a CI job, a test): `scaled(600)` judges ten minutes the way the
        default judges eight hours. Rates (bytes per hour) scale inversely."""
        k = history_s / self.history_s
        return replace(
            self,
            bucket_s=self.bucket_s * k,
            history_s=history_s,
            ramp_ages_s=tuple(a * k for a in self.ramp_ages_s),
            min_fit_s=self.min_fit_s * k,
            warmup_s=self.warmup_s * k,
            staircase_window_s=self.staircase_window_s * k,
            min_duration_s=self.min_duration_s * k,
            noise_record_every_s=self.noise_record_every_s * k,
            min_slope_bytes_per_hour=self.min_slope_bytes_per_hour / k,
        )

    def __post_init__(self) -> None:
        if self.bucket_s <= 0 or self.history_s <= 0 or min(self.ramp_ages_s, default=1) <= 0:
            raise ValueError("bucket_s, history_s and every ramp age must be positive")
        if self.confirm_buckets < 1 or self.step_buckets < 2 or self.staircase_steps < 2:
            raise ValueError("confirm_buckets >= 1, step_buckets >= 2, staircase_steps >= 2")


@dataclass(frozen=True, slots=True)
class Step:
    """A sharp level change the detector found."""

    t: float  # stream time of the first bucket at the new level
    size_bytes: float  # positive up, negative down
    level_before: float  # raw level just before it


@dataclass(frozen=True, slots=True)
class Fit:
    """A least-squares line over a window, with an autocorrelation-aware error."""

    slope_per_s: float
    stderr_per_s: float
    points: int
    span_s: float
    rho: float  # residual lag-1 autocorrelation used for the inflation
    variance: float  # residual variance used

    @property
    def long_run_variance(self) -> float:
        """The residuals' variance inflated for their autocorrelation (AR(1))."""
        return self.variance * (1 + self.rho) / (1 - self.rho)

    @property
    def z(self) -> float:
        if self.stderr_per_s <= 0:
            return math.inf if self.slope_per_s > 0 else 0.0
        return self.slope_per_s / self.stderr_per_s

    def ci_per_hour(self, z: float = 1.96) -> tuple[float, float]:
        return (
            (self.slope_per_s - z * self.stderr_per_s) * HOUR,
            (self.slope_per_s + z * self.stderr_per_s) * HOUR,
        )


@dataclass(frozen=True, slots=True)
class Alarm:
    """Why the detector alarmed, at the bucket it did."""

    t: float
    kind: Literal["slope", "staircase"]
    slope_bytes_per_hour: float
    ci_bytes_per_hour: tuple[float, float]
    window_s: float
    z: float
    level_bytes: float
    reason: str


@dataclass(frozen=True, slots=True)
class Trend:
    """The offline verdict on a series (`detect_leak`)."""

    verdict: Verdict
    slope_bytes_per_hour: float | None
    slope_ci_bytes_per_hour: tuple[float, float] | None
    first_alert_t: float | None  # seconds from the first sample; None if never
    peak_bytes: float | None
    time_to_exhaustion_s: float | None
    samples: int
    duration_s: float
    steps: tuple[Step, ...] = ()
    alarms: int = 0
    reason: str = ""


def _noise(residuals: npt.NDArray[np.float64], dof: int) -> tuple[float, float]:
    """(variance, lag-1 autocorrelation) of residuals; rho bias-corrected and clipped."""
    rss = float(residuals @ residuals)
    if rss <= 0 or dof <= 0:
        return 0.0, 0.0
    n = len(residuals)
    rho = float(residuals[1:] @ residuals[:-1]) / rss
    rho = min(max(rho + (1 + 3 * rho) / n, 0.0), 0.98)  # small-sample bias, then clip
    return rss / dof, rho


def fit_ramp(
    t: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    ramp_from: float | None = None,
    step_times: Sequence[float] = (),
    noise: tuple[float, float] | None = None,
    long_run_variance_floor: float = 0.0,
) -> Fit | None:
    """Least squares of y on a level plus a ramp `max(t - ramp_from, 0)` (a plain line when
    `ramp_from` is None or before the window), with a level shift at each of `step_times`
    inside the window (a nuisance term, so a step does not pass for a slope).

    The slope's error assumes AR(1) noise: `noise` = (variance, rho) when given (measured
    over a longer window), else from this fit's residuals; the long-run variance
    (variance * (1 + rho) / (1 - rho)) is at least `long_run_variance_floor`."""
    n = len(t)
    inside = [s for s in step_times if t[0] < s <= t[-1]]
    origin = float(t[0]) if ramp_from is None or ramp_from <= t[0] else ramp_from
    if n < 3 + len(inside):
        return None
    x = np.maximum(t - origin, 0.0)
    if not inside:
        xc = x - float(x.mean())
        sxx = float(xc @ xc)
        if sxx <= 0:
            return None
        slope = float(xc @ y) / sxx
        residuals = y - float(y.mean()) - slope * xc
        unit_variance = 1.0 / sxx
    else:
        design = np.column_stack([np.ones(n), x] + [(t >= s).astype(np.float64) for s in inside])
        try:
            gram_inv = np.linalg.inv(design.T @ design)
        except np.linalg.LinAlgError:
            return None
        beta = gram_inv @ (design.T @ y)
        slope = float(beta[1])
        residuals = y - design @ beta
        unit_variance = float(gram_inv[1, 1])
    variance, rho = noise if noise is not None else _noise(residuals, n - 2 - len(inside))
    long_run = max(variance * (1 + rho) / (1 - rho), long_run_variance_floor, 0.0)
    stderr = math.sqrt(long_run * unit_variance)
    return Fit(slope, stderr, n, float(t[-1] - origin), rho, variance)


def _with_floor(fit: Fit, long_run_variance_floor: float) -> Fit:
    """The same fit with its long-run variance raised to the floor, if below it."""
    if fit.long_run_variance >= long_run_variance_floor or fit.stderr_per_s <= 0:
        return fit
    scale = math.sqrt(long_run_variance_floor / fit.long_run_variance)
    return replace(fit, stderr_per_s=fit.stderr_per_s * scale)


def fit_ramps(
    t: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    origins: Sequence[float],
    long_run_variance_floor: float = 0.0,
) -> list[Fit]:
    """`fit_ramp` for several ramp origins at once (no level shifts), in a few array ops."""
    n = len(t)
    if n < 3:
        return []
    x = np.maximum(t[None, :] - np.asarray(origins, dtype=np.float64)[:, None], 0.0)
    xc = x - x.mean(axis=1, keepdims=True)
    sxx = np.einsum("ij,ij->i", xc, xc)
    ok = sxx > 0
    sxx = np.where(ok, sxx, 1.0)
    yc = y - float(y.mean())
    slope = (xc @ yc) / sxx
    residuals = yc[None, :] - slope[:, None] * xc
    rss = np.einsum("ij,ij->i", residuals, residuals)
    lag = np.einsum("ij,ij->i", residuals[:, 1:], residuals[:, :-1])
    fits: list[Fit] = []
    for i, origin in enumerate(origins):
        if not ok[i]:
            continue
        if rss[i] <= 0:
            variance, rho = 0.0, 0.0
        else:
            r = float(lag[i] / rss[i])
            rho = min(max(r + (1 + 3 * r) / n, 0.0), 0.98)
            variance = float(rss[i]) / (n - 2)
        long_run = max(variance * (1 + rho) / (1 - rho), long_run_variance_floor, 0.0)
        stderr = math.sqrt(long_run / float(sxx[i]))
        span = float(t[-1] - max(origin, float(t[0])))
        fits.append(Fit(float(slope[i]), stderr, n, span, rho, variance))
    return fits


def _median(values: npt.NDArray[np.float64]) -> float:
    """Median of a handful of values (np.median costs more than the sort here)."""
    ordered: list[float] = sorted(values.tolist())
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _robust_scale(values: npt.NDArray[np.float64]) -> float:
    """Noise width: MAD of the residuals from a straight line, as a standard deviation."""
    n = len(values)
    if n < 5:
        return 0.0
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2
    slope = float(x @ values) / float(x @ x)
    residuals = values - float(values.mean()) - slope * x
    deviations = np.abs(residuals - np.median(residuals))
    return float(1.4826 * np.median(deviations))


@dataclass
class LeakDetector:
    """The online detector. Feed it `update(t, value)`; read `alarm`, `alarms`, `steps`.

    `t` is seconds (stream time), increasing; `value` is bytes. History is bounded by the
    longest window (and the staircase window's steps), whatever the run's length.
    """

    config: DetectorConfig = field(default_factory=DetectorConfig)
    alarms: list[Alarm] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._capacity = 2 * int(self.config.history_s / self.config.bucket_s) + 8
        self._t = np.zeros(self._capacity)
        self._raw = np.zeros(self._capacity)
        self._count = 0
        self._t0: float | None = None
        self._bucket: int | None = None
        self._sum_t = self._sum_v = 0.0
        self._n_in_bucket = 0
        self._streak = 0
        self._quiet = 0
        self._steps_quiet_until = -math.inf
        self._noise_history: deque[float] = deque(maxlen=self.config.noise_history)
        self._noise_recorded_t = -math.inf
        self._last_t: float | None = None
        self.samples = 0
        self.peak: float = -math.inf
        self.alarm: Alarm | None = None  # the alarm in force (None when quiet)
        self.last_fit: Fit | None = None

    # -- feeding --------------------------------------------------------------------------

    def update(self, t: float, value: float) -> Alarm | None:
        """Add one sample; returns a new alarm when this sample closed a bucket that raised one."""
        if self._last_t is not None and t < self._last_t:
            raise ValueError(f"time went backwards: {t} after {self._last_t}")
        if not (math.isfinite(value) and math.isfinite(t)):
            return None
        self._last_t = t
        self.samples += 1
        self.peak = max(self.peak, value)
        if self._t0 is None:
            self._t0 = t
        bucket = int((t - self._t0) // self.config.bucket_s)
        raised = None
        if self._bucket is not None and bucket != self._bucket:
            raised = self._close_bucket()
        self._bucket = bucket
        self._sum_t += t
        self._sum_v += value
        self._n_in_bucket += 1
        return raised

    def update_many(
        self, times_s: npt.NDArray[np.float64], values_bytes: npt.NDArray[np.float64]
    ) -> list[Alarm]:
        """Add many samples at once: the same as `update` one by one, bucketed in numpy."""
        t = np.asarray(times_s, dtype=np.float64)
        v = np.asarray(values_bytes, dtype=np.float64)
        keep = np.isfinite(t) & np.isfinite(v)
        t, v = t[keep], v[keep]
        if len(t) == 0:
            return []
        if np.any(np.diff(t) < 0) or (self._last_t is not None and t[0] < self._last_t):
            raise ValueError("time went backwards")
        if self._t0 is None:
            self._t0 = float(t[0])
        self._last_t = float(t[-1])
        self.samples += len(t)
        self.peak = max(self.peak, float(v.max()))
        index = ((t - self._t0) // self.config.bucket_s).astype(np.int64)
        starts = np.concatenate(([0], np.flatnonzero(np.diff(index)) + 1))
        sums_t = np.add.reduceat(t, starts)
        sums_v = np.add.reduceat(v, starts)
        counts = np.diff(np.concatenate((starts, [len(t)])))
        raised: list[Alarm] = []
        for group, bucket in enumerate(index[starts].tolist()):
            if self._bucket is not None and bucket != self._bucket:
                alarm = self._close_bucket()
                if alarm is not None:
                    raised.append(alarm)
            self._bucket = bucket
            self._sum_t += float(sums_t[group])
            self._sum_v += float(sums_v[group])
            self._n_in_bucket += int(counts[group])
        return raised

    def flush(self) -> Alarm | None:
        """Close the bucket in progress (at the end of a series)."""
        if self._n_in_bucket == 0:
            return None
        return self._close_bucket()

    def _close_bucket(self) -> Alarm | None:
        t = self._sum_t / self._n_in_bucket
        value = self._sum_v / self._n_in_bucket
        self._sum_t = self._sum_v = 0.0
        self._n_in_bucket = 0
        if self._count == self._capacity:
            keep = int(self.config.history_s / self.config.bucket_s) + 4
            for array in (self._t, self._raw):
                array[:keep] = array[self._count - keep : self._count]
            self._count = keep
        i = self._count
        self._t[i] = t
        self._raw[i] = value
        self._count += 1
        return self._evaluate()

    # -- deciding -------------------------------------------------------------------------

    def _evaluate(self) -> Alarm | None:
        cfg = self.config
        assert self._t0 is not None
        n = self._count
        t_now = float(self._t[n - 1])
        self._find_step()
        if t_now - self._t0 < cfg.warmup_s:
            return None
        candidate = self._staircase(t_now) or self._slope(t_now)
        if candidate is None:
            self._streak = 0
            self._quiet += 1
            if self._quiet >= cfg.rearm_buckets:
                self.alarm = None  # quiet long enough: the next alarm is a new episode
            return None
        self._quiet = 0
        self._streak += 1
        if self._streak < cfg.confirm_buckets:
            return None
        was_quiet = self.alarm is None
        self.alarm = candidate
        if was_quiet:
            self.alarms.append(candidate)
            return candidate
        return None

    def _find_step(self) -> None:
        cfg = self.config
        k = cfg.step_buckets
        n = self._count
        if n < 2 * k + 30 or self._t[n - 1] < self._steps_quiet_until:
            return
        before = self._raw[n - 2 * k : n - k]
        after = self._raw[n - k : n]
        delta = _median(after) - _median(before)
        # the noise width comes from the buckets before, warm-up left out where enough remain
        # (an encoder's start is a jump that would make any later step look small)
        start = max(0, n - 2 * k - cfg.step_reference_buckets)
        settled = int(np.searchsorted(self._t[:n], (self._t0 or 0.0) + cfg.warmup_s))
        if n - 2 * k - settled >= 20:
            start = max(start, settled)
        reference = self._raw[start : n - 2 * k]
        threshold = max(cfg.min_step_bytes, cfg.step_sigmas * _robust_scale(reference))
        if abs(delta) < threshold:
            return
        # A step is sharp: most of it happens within two buckets; a steep ramp is no step.
        window = self._raw[n - 2 * k : n]
        jumps = (window[2:] - window[:-2]) * np.sign(delta)
        if float(jumps.max()) < cfg.step_sharpness * abs(delta):
            return
        single = np.diff(window) * np.sign(delta)
        at = n - 2 * k + 1 + int(np.argmax(single))
        level_before = _median(self._raw[max(0, at - k) : at])
        step = Step(float(self._t[at]), delta, level_before)
        self.steps.append(step)
        # the same step stays in the comparison windows for a while: look again once it left
        self._steps_quiet_until = step.t + 2 * k * cfg.bucket_s

    def _staircase(self, t_now: float) -> Alarm | None:
        cfg = self.config
        ups = [s for s in self.steps if s.size_bytes > 0 and t_now - s.t <= cfg.staircase_window_s]
        if len(ups) < cfg.staircase_steps:
            return None
        ups = ups[-cfg.staircase_steps :]
        rise = sum(s.size_bytes for s in ups)
        n = self._count
        level_now = _median(self._raw[max(0, n - cfg.step_buckets) : n])
        kept = level_now - ups[0].level_before
        if kept < cfg.staircase_kept_share * rise:
            return None
        span = max(t_now - ups[0].t, cfg.bucket_s)
        rate = kept / span * HOUR
        return Alarm(
            t=t_now,
            kind="staircase",
            slope_bytes_per_hour=rate,
            ci_bytes_per_hour=(rate, rate),
            window_s=span,
            z=math.inf,
            level_bytes=level_now,
            reason=f"{len(ups)} upward steps totalling {rise / MB:.0f} MB in "
            f"{format_duration(span)}, {kept / MB:.0f} MB still held",
        )

    def _slope(self, t_now: float) -> Alarm | None:
        cfg = self.config
        n = self._count
        start_t = max((self._t0 or 0.0) + cfg.warmup_s, t_now - cfg.history_s)
        lo = int(np.searchsorted(self._t[:n], start_t, side="left"))
        t, y = self._t[lo:n], self._raw[lo:n]
        if n - lo < cfg.min_points or t_now - t[0] < cfg.min_fit_s:
            return None
        # A rise is a level shift in the fit (a pool that grew once); a fall stays in the
        # data, or a GC sawtooth would pass for a climb.
        rises = [s.t for s in self.steps if s.size_bytes > 0 and t[0] < s.t <= t_now]
        origins = [float(t[0])] + [t_now - a for a in cfg.ramp_ages_s if t_now - a > t[0]]
        if rises:
            raw = [fit_ramp(t, y, origin, rises) for origin in origins]
            fits = [f for f in raw if f is not None]
        else:
            fits = fit_ramps(t, y, origins)
        if not fits or fits[0].span_s < t_now - float(t[0]):
            return None
        line = self.last_fit = fits[0]
        # Noise is a property of the process: the median of the line fits' long-run variance
        # over the past day bounds each test's, so one quiet stretch cannot fake certainty.
        # Only near-full windows are recorded: a short window's detrended noise looks tamer.
        full = line.span_s >= 0.75 * cfg.history_s
        if full and t_now - self._noise_recorded_t >= cfg.noise_record_every_s:
            self._noise_history.append(line.long_run_variance)
            self._noise_recorded_t = t_now
        learned = len(self._noise_history) >= 3
        floor = _median(np.asarray(self._noise_history)) if learned else 0.0
        z_alarm = cfg.z_alarm if learned else cfg.z_alarm + cfg.learning_z_margin
        best = max((_with_floor(f, floor) for f in fits), key=lambda f: f.z)
        slope_h = best.slope_per_s * HOUR
        if best.z < z_alarm or slope_h < cfg.min_slope_bytes_per_hour:
            return None
        return Alarm(
            t=t_now,
            kind="slope",
            slope_bytes_per_hour=slope_h,
            ci_bytes_per_hour=best.ci_per_hour(),
            window_s=best.span_s,
            z=best.z,
            level_bytes=float(self._raw[n - 1]),
            reason=f"growing {slope_h / MB:.1f} MB/h for the last "
            f"{format_duration(best.span_s)} (z = {best.z:.1f})",
        )

    # -- reading --------------------------------------------------------------------------

    @property
    def t0(self) -> float | None:
        return self._t0

    def buckets(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """The bucketed history held now: (times, raw values)."""
        return self._t[: self._count].copy(), self._raw[: self._count].copy()


def prewarm(config: DetectorConfig | None = None) -> None:
    """Run a throwaway detector over a synthetic series that takes every path (fits, steps,
    noise records, alarms), so the one-time costs of the first use (numpy's and LAPACK's
    code pages, allocator pools: about 2.5 MB of RSS here) are paid before a run that
    watches its own process starts, and do not read as growth."""
    cfg = config or DetectorConfig()
    buckets = 3 * int(cfg.history_s / cfg.bucket_s)
    t = np.arange(buckets, dtype=np.float64) * cfg.bucket_s
    rng = np.random.default_rng(0)
    values = 1e8 + rng.normal(0.0, 1e6, buckets)
    values[buckets // 3 :] += 5e7  # a step
    values[2 * buckets // 3 :] += np.arange(buckets - 2 * buckets // 3) * 1e5  # a ramp
    detector = LeakDetector(cfg)
    detector.update_many(t, values)
    detector.flush()


def detect_leak(
    times_s: Sequence[float] | npt.ArrayLike,
    values_bytes: Sequence[float] | npt.ArrayLike,
    config: DetectorConfig | None = None,
    budget_bytes: float | None = None,
) -> Trend:
    """The offline verdict on a series: the online detector replayed over it, sample by
    sample, plus the growth over the whole series (steps taken out, as online).

    `verdict` is `leak` when the online detector alarmed at any point or the whole series
    grows beyond doubt; `insufficient-data` when the series is shorter than
    `min_duration_s` (after warm-up) or has too few points. `time_to_exhaustion_s` is
    against `budget_bytes` (the device total, say) at the whole-series slope.
    """
    cfg = config or DetectorConfig()
    t = np.asarray(times_s, dtype=np.float64)
    v = np.asarray(values_bytes, dtype=np.float64)
    if t.shape != v.shape or t.ndim != 1:
        raise ValueError("times and values must be one-dimensional and of equal length")
    if len(t) and np.any(np.diff(t) < 0):
        raise ValueError("times must not go backwards")
    finite = np.isfinite(v) & np.isfinite(t)
    t, v = t[finite], v[finite]
    if len(t) == 0:
        return Trend("insufficient-data", None, None, None, None, None, 0, 0.0)
    detector = LeakDetector(cfg)
    detector.update_many(t, v)
    detector.flush()
    return _verdict(detector, t, v, cfg, budget_bytes)


def _verdict(
    detector: LeakDetector,
    t: npt.NDArray[np.float64],
    v: npt.NDArray[np.float64],
    cfg: DetectorConfig,
    budget_bytes: float | None,
) -> Trend:
    t0 = float(t[0])
    duration = float(t[-1] - t0)
    first = detector.alarms[0] if detector.alarms else None
    steps = tuple(detector.steps)
    peak = float(v.max())
    # Whole-series growth, warm-up left out and upward steps taken out as online.
    keep = t >= t0 + cfg.warmup_s
    series_t, series_v = t[keep], v[keep]
    # Rises are level shifts (a pool that grew once), unless they were the leak: a staircase.
    staircase = any(a.kind == "staircase" for a in detector.alarms)
    rises = [] if staircase else [s.t for s in steps if s.size_bytes > 0]
    fit = None
    if len(series_t) >= cfg.min_points:
        fit = fit_ramp(series_t, series_v, None, rises) or fit_ramp(series_t, series_v)
    if fit is None or duration - cfg.warmup_s < cfg.min_duration_s:
        verdict: Verdict = "leak" if first is not None else "insufficient-data"
        return Trend(
            verdict, None, None, None if first is None else first.t - t0, peak, None,
            len(t), duration, steps, len(detector.alarms),
            first.reason if first else "too short to judge",
        )  # fmt: skip
    slope_h = fit.slope_per_s * HOUR
    ci = fit.ci_per_hour()
    grows = fit.z >= cfg.z_alarm and slope_h >= cfg.min_slope_bytes_per_hour
    verdict = "leak" if first is not None or grows else "stable"
    if first is not None:
        reason = first.reason
    elif grows:
        reason = f"growing {slope_h / MB:.1f} MB/h over the whole series (z = {fit.z:.1f})"
    else:
        reason = f"no sustained growth ({slope_h / MB:+.2f} MB/h, z = {fit.z:.1f})"
    exhaustion = None
    if budget_bytes is not None and slope_h > 0 and verdict == "leak":
        exhaustion = max(0.0, (budget_bytes - float(v[-1])) / slope_h * HOUR)
    return Trend(
        verdict, slope_h, ci, None if first is None else first.t - t0, peak, exhaustion,
        len(t), duration, steps, len(detector.alarms), reason,
    )  # fmt: skip
