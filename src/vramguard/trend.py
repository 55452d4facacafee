"""The leak detector: an online test for memory that keeps growing, robust to noise.

The plan's detector (least squares over the last 10 samples, alarm above 1 MB/min) alarms
on noise and cannot see 10-20 MB/h. This one works on one-minute buckets and asks two
questions at each bucket:

1. **Growth.** Over the last `history_s` (8 h), does memory bend upward and keep
   climbing? The detector fits a level plus a ramp that starts at each of several ages
   (`ramp_ages_s`, 1 h to 6 h ago, and the window's start: a plain slope), so a leak that
   began 2 h ago is tested against the flat history before it: that is what makes slow
   leaks visible early. The ramp's standard error is the largest of three that assume no
   one noise model (AR(1), batch means at every scale, and the process's own variogram
   from before the ramp), so slow drift, GC sawtooth and a quiet stretch do not pass for a
   trend. An alarm needs `z >= z_alarm` (plus a margin while the noise is still being
   learned), a ramp of at least `min_slope_bytes_per_hour`, `confirm_buckets` buckets in
   a row, and, for a new episode, a likelihood ratio of `wander_z` squared against a
   wander fitted to the same history (`vramguard.wander`): learned error bars can be too
   narrow, a fitted wander is not assumed.
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

import functools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from vramguard.noise import (
    Variogram,
    ar1_long_run_variance,
    despike,
    despiked_value,
    long_run_variance,
    median,
    missed_step,
    small_median,
    spike_width,
)
from vramguard.units import format_duration
from vramguard.wander import likelihood_ratios

HOUR = 3600.0
MB = 1e6

Verdict = Literal["leak", "stable", "insufficient-data"]


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Every policy of the detector, named; the defaults meet the targets in bench/RESULTS.md."""

    bucket_s: float = 60.0
    history_s: float = 8 * HOUR
    ramp_ages_s: tuple[float, ...] = tuple(a * HOUR for a in (0.75, 1, 1.5, 2, 3, 4, 6))
    min_fit_s: float = 2 * HOUR  # data needed after warm-up before growth is judged
    noise_record_every_s: float = 1 * HOUR
    learning_z_margin: float = 0.5  # added to z_alarm while the history is short
    learned_history_factor: float = 2.0  # history, after warm-up, per window length tested
    z_alarm: float = 4.5
    min_slope_bytes_per_hour: float = 2 * MB
    confirm_buckets: int = 3
    rearm_buckets: int = 60  # quiet buckets that end an alarm episode
    warmup_s: float = 1800.0
    min_points: int = 20
    step_buckets: int = 5
    step_sigmas: float = 6.0
    step_sharpness: float = 0.7  # share of a step that must happen within two buckets
    step_reference_buckets: int = 180  # noise width for steps measured over this many
    # a rise the slope test found significant and one level shift explains, in noise widths,
    # that counts as a (missed) step of a staircase: half the finder's own threshold
    missed_step_sigmas: float = 3.0
    # A new slope alarm also needs a likelihood ratio of wander_z ** 2 against a wander: the
    # series' history, as wander_means means a window, fitted with white plus OU noise of
    # every time constant up to wander_tau_windows windows, without the ramp and with it
    # (`vramguard.wander`). 0 turns the check off. A ramp a wander explained is looked at
    # again after wander_recheck_buckets.
    wander_z: float = 4.0
    wander_means: int = 48
    wander_tau_windows: float = 25.0
    wander_recheck_buckets: int = 5
    # A leak the window lost sight of: once the series since its warm-up is longer than the
    # window, every long_every_s its best onset (a flat history, then a ramp; onsets every
    # long_every_s) is fitted against a wander on the whole held history (`_long_ramp`);
    # a likelihood ratio of long_z ** 2 alarms. 0 turns it off. Off, too, where the wander
    # check is (wander_z 0, or a noise prior given).
    long_z: float = 5.0
    long_every_s: float = 1 * HOUR
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
            long_every_s=self.long_every_s * k,
            min_slope_bytes_per_hour=self.min_slope_bytes_per_hour / k,
        )

    def for_duration(self, duration_s: float) -> DetectorConfig:
        """The detector on a run's own time scale: a window of a third of the run (at most
        the default 8 h) and a warm-up of a quarter of a short run (at most 30 min), so a
        ten-minute job is judged on minutes and a two-day log as the default judges it."""
        window = min(self.history_s, max(duration_s, 1.0) / 3)
        scaled = self.scaled(window) if window < self.history_s else self
        warmup = max(scaled.warmup_s, min(0.25 * duration_s, self.warmup_s))
        return replace(scaled, warmup_s=warmup)

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
    alarm_slope_bytes_per_hour: float | None = None  # the first alarm's recent ramp
    restarts: tuple[float, ...] = ()  # seconds from the first sample
    load: Literal["unknown", "used", "constant"] = "unknown"
    needs_more_s: float | None = None  # insufficient data: how much longer the run must be


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
    if noise is None:
        noise = ar1_long_run_variance(residuals, n - 2 - len(inside))[:2]
    variance, rho = noise
    long_run = max(variance * (1 + rho) / (1 - rho), long_run_variance_floor, 0.0)
    stderr = math.sqrt(long_run * unit_variance)
    return Fit(slope, stderr, n, float(t[-1] - origin), rho, variance)


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


def _robust_scale(values: npt.NDArray[np.float64]) -> float:
    """Noise width: MAD of the residuals from a straight line, as a standard deviation."""
    n = len(values)
    if n < 5:
        return 0.0
    x, xx = _centred_positions(n)
    slope = float(x @ values) / xx
    residuals = values - float(values.sum()) / n - slope * x  # sum / n: the mean, bit for bit
    np.subtract(residuals, median(residuals, in_place=True), out=residuals)
    return 1.4826 * median(np.abs(residuals, out=residuals), in_place=True)


def _sharpest(values: list[float], direction: float) -> float:
    """The largest change over two buckets in the direction of `direction` (a rise where it
    is positive, a fall where negative, 0 where it is 0): how sharp a step is."""
    jumps = [later - earlier for earlier, later in zip(values, values[2:], strict=False)]
    return max(jumps) if direction > 0 else -min(jumps) if direction < 0 else 0.0


@functools.cache
def _centred_positions(n: int) -> tuple[npt.NDArray[np.float64], float]:
    """0..n-1 centred, and its sum of squares: the step finder's reference line, every bucket
    the same length."""
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2
    x.flags.writeable = False
    return x, float(x @ x)


def _bucket_sums(
    t: npt.NDArray[np.float64],
    v: npt.NDArray[np.float64],
    load: npt.NDArray[np.float64],
    origin: float,
    bucket_s: float,
) -> tuple[npt.NDArray[Any], ...]:
    """Samples grouped into buckets of `bucket_s` from `origin`, in one pass of numpy: each
    group's bucket number, sums of t and value, sample count, and sum and count of the load
    where it is known (NaN elsewhere)."""
    index = ((t - origin) // bucket_s).astype(np.int64)
    starts = np.concatenate(([0], np.flatnonzero(np.diff(index)) + 1))
    counts = np.diff(np.concatenate((starts, [len(t)])))
    known = np.isfinite(load)
    return (
        index[starts], np.add.reduceat(t, starts), np.add.reduceat(v, starts), counts,
        np.add.reduceat(np.where(known, load, 0.0), starts),
        np.add.reduceat(known.astype(np.int64), starts),
    )  # fmt: skip


def _usable_load(load: npt.NDArray[np.float64]) -> bool:
    """A load column explains memory only where it is known throughout and moves."""
    return bool(len(load)) and bool(np.all(np.isfinite(load))) and float(np.ptp(load)) > 0


def _ramps(t: npt.NDArray[np.float64], origins: Sequence[float]) -> npt.NDArray[np.float64]:
    """One ramp column per origin: max(t - origin, 0)."""
    columns: npt.NDArray[np.float64] = np.maximum(t[None, :] - np.asarray(origins)[:, None], 0.0)
    return columns


@dataclass(frozen=True, slots=True)
class _Test:
    """One growth to test: a ramp from `origin`, as memory or as memory per unit of load."""

    origin: float
    kind: Literal["memory", "per-session"]


@dataclass(frozen=True, slots=True)
class _Fitted:
    """Least squares of y on [1, column, *nuisance]: the column's coefficient, the linear
    weights that give it (w . y), the residuals and what the nuisance terms explain."""

    slope: float
    weights: npt.NDArray[np.float64]
    residuals: npt.NDArray[np.float64]
    nuisance_part: npt.NDArray[np.float64]
    rss: float
    dof: int


class _Design:
    """What least squares of any y on [1, column, *nuisance] needs of the columns (rows of
    `columns`) and the nuisance terms alone: the intercept and nuisance projected out of each
    column (Frisch-Waugh-Lovell), its sum of squares and lag-1 products. None of it depends
    on y, so the detector keeps one while the window's columns repeat bucket after bucket
    (regular sampling, a full window and no nuisance: the ramps sit where they sat)."""

    def __init__(
        self, columns: npt.NDArray[np.float64], nuisance: Sequence[npt.NDArray[np.float64]]
    ) -> None:
        n = columns.shape[1]
        self.columns = columns
        self.q: npt.NDArray[np.float64] | None = None
        if nuisance:
            base = np.column_stack([np.ones(n), *nuisance])
            q, r = np.linalg.qr(base)
            keep = np.abs(np.diag(r)) > 1e-9 * max(1.0, float(np.abs(r).max()))
            self.q = q[:, keep]
            self.dof = n - self.q.shape[1] - 1
            self.c_res = columns - (columns @ self.q) @ self.q.T
        else:  # the intercept alone: projecting it out is centring
            self.dof = n - 2
            self.c_res = columns - columns.mean(axis=1, keepdims=True)
        sxx = np.einsum("ij,ij->i", self.c_res, self.c_res)
        scale = np.maximum(np.einsum("ij,ij->i", columns, columns), 1e-300)
        self.ok: npt.NDArray[np.bool_] = (sxx > 1e-12 * scale) & (self.dof >= 3)
        self.sxx = np.where(self.ok, sxx, 1.0)
        c_lag = np.einsum("ij,ij->i", self.c_res[:, 1:], self.c_res[:, :-1])
        # per column, as Python floats: the screen's arithmetic on a handful of columns
        # costs less in Python than in numpy calls (the same IEEE operations, in the same order)
        self.per_column = list(zip(sxx.tolist(), self.sxx.tolist(), c_lag.tolist(),
                                   self.ok.tolist(), strict=True))  # fmt: skip

    def project(self, y: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """y with the intercept and nuisance terms projected out."""
        if self.q is None:  # sum / n: the mean, bit for bit (np.mean divides the same sum)
            centred: npt.NDArray[np.float64] = y - float(y.sum()) / len(y)
            return centred
        projected: npt.NDArray[np.float64] = y - self.q @ (self.q.T @ y)
        return projected


class _Fits:
    """Least squares of y on [1, column, *nuisance] for many columns at once (rows of
    `columns`), through a `_Design`: each column's coefficient is a dot product with its
    residualised column. Slopes and an AR(1) z for every column cost a few array operations;
    the residuals and weights a careful error needs are built only for the columns that
    pass that screen.

    The AR(1) figures (lag-1 products, rho) are computed when first asked for: `may_reach`
    answers most buckets without them."""

    def __init__(
        self,
        y: npt.NDArray[np.float64],
        columns: npt.NDArray[np.float64],
        nuisance: Sequence[npt.NDArray[np.float64]],
        design: _Design | None = None,
    ) -> None:
        d = design if design is not None else _Design(columns, nuisance)
        self.y, self.design = y, d
        self.y_res = d.project(y)
        self.cy = d.c_res @ self.y_res
        self.slopes = self.cy / d.sxx
        # residual sums of squares without building the residuals
        self.yy = float(self.y_res @ self.y_res)
        dof = max(d.dof, 1)
        self.rss: list[float] = []
        self.variance: list[float] = []
        self.white_z: list[float] = []  # z with the residuals taken as white (rho = 0)
        for b, cy_i, (sxx, sxx_safe, _, _) in zip(
            self.slopes.tolist(), self.cy.tolist(), d.per_column, strict=True
        ):
            rss = max(self.yy - 2 * b * cy_i + b * b * sxx, 0.0)
            variance = rss / dof
            se = math.sqrt(variance / sxx_safe)
            self.rss.append(rss)
            self.variance.append(variance)
            self.white_z.append(b / se if se > 0 else math.inf if b > 0 else 0.0)
        self._ar1: tuple[list[float], list[float]] | None = None

    def may_reach(self, z_needed: float) -> bool:
        """Whether any column's AR(1) z (`z_model`) may reach `z_needed`. A positive slope's
        white-noise z bounds it from above, operation by operation: rho >= 0 only multiplies
        the variance by (1 + rho) / (1 - rho) >= 1, and rounding is monotone. So a False
        here is exactly `max(z_model) < z_needed`, without the lag-1 products."""
        if z_needed <= 0 or not math.isfinite(self.yy):
            return True
        return not all(z < z_needed for z in self.white_z)

    @property
    def rho(self) -> list[float]:
        """Each column's residual lag-1 autocorrelation, bias-corrected, clipped to [0, 0.98]."""
        return self._ar1_figures()[0]

    @property
    def z_model(self) -> list[float]:
        """Each column's slope over its AR(1) standard error (-inf for a column that fits
        nothing)."""
        return self._ar1_figures()[1]

    def _ar1_figures(self) -> tuple[list[float], list[float]]:
        if self._ar1 is not None:
            return self._ar1
        d, y_res, n = self.design, self.y_res, len(self.y)
        y_lag = float(y_res[1:] @ y_res[:-1])
        cross = d.c_res[:, 1:] @ y_res[:-1] + d.c_res[:, :-1] @ y_res[1:]
        rhos: list[float] = []
        zs: list[float] = []
        for b, cross_i, rss, variance, (_, sxx_safe, c_lag, ok) in zip(
            self.slopes.tolist(), cross.tolist(), self.rss, self.variance, d.per_column,
            strict=True,
        ):  # fmt: skip
            lag = y_lag - b * cross_i + b * b * c_lag
            rho = lag / (rss if rss > 0 else 1.0)
            rho = min(max(rho + (1 + 3 * rho) / n, 0.0), 0.98)
            se = math.sqrt(variance * (1 + rho) / (1 - rho) / sxx_safe)
            z = b / se if se > 0 else math.inf if b > 0 else 0.0
            rhos.append(rho)
            zs.append(z if ok else -math.inf)
        self._ar1 = (rhos, zs)
        return self._ar1

    @property
    def ok(self) -> npt.NDArray[np.bool_]:
        return self.design.ok

    def candidate(self, i: int) -> _Fitted:
        d = self.design
        slope = float(self.slopes[i])
        residuals = self.y_res - slope * d.c_res[i]
        if d.q is None:  # the intercept alone explains no shape
            nuisance_part = np.zeros(len(self.y))
        else:
            explained = ((self.y - slope * d.columns[i]) @ d.q) @ d.q.T
            nuisance_part = explained - explained.mean()
        return _Fitted(
            slope, d.c_res[i] / float(d.sxx[i]), residuals, nuisance_part,
            self.rss[i], d.dof,
        )  # fmt: skip

    def fit(self, i: int, points: int, span_s: float) -> Fit:
        """Column i's line as a `Fit` (slope and its AR(1) error), without its residuals."""
        slope, z = float(self.slopes[i]), self.z_model[i]
        stderr = slope / z if z not in (0.0, math.inf) else 0.0
        return Fit(slope, abs(stderr), points, span_s, self.rho[i], self.variance[i])


@dataclass
class LeakDetector:
    """The online detector. Feed it `update(t, value)`; read `alarm`, `alarms`, `steps`.

    `t` is seconds (stream time), increasing; `value` is bytes. History is bounded by the
    longest window (and the staircase window's steps), whatever the run's length.
    """

    config: DetectorConfig = field(default_factory=DetectorConfig)
    alarms: list[Alarm] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    #: the same process's noise from an earlier run (`noise_prior`), measured with this
    #: config: pooled with the run's own variogram, it stands in for the history a young
    #: run has not yet shown (a slow wander the first hours cannot tell from a leak)
    noise_prior: Variogram | None = None

    def __post_init__(self) -> None:
        cfg = self.config
        window = int(cfg.history_s / cfg.bucket_s)
        # a day and a half of buckets: the window, and the history the variogram reads
        self._keep = 3 * window + 8
        self._capacity = 4 * window + 8
        self._t = np.zeros(self._capacity)
        self._raw = np.zeros(self._capacity)
        self._clean = np.zeros(self._capacity)  # the raw buckets, single spikes replaced
        self._spike_width = 0.0
        self._load = np.full(self._capacity, np.nan)
        self._load_seen = False  # whether any bucket knew its load
        self._index = np.zeros(self._capacity, dtype=np.int64)
        self._count = 0
        self._t0: float | None = None
        self._series_t0: float | None = None  # start of the series since the last restart
        self._bucket: int | None = None
        self._sum_t = self._sum_v = self._sum_l = 0.0
        self._n_in_bucket = self._n_load = 0
        self._streak = 0
        self._quiet = 0
        self._steps_quiet_until = -math.inf
        self._wander_until = -math.inf  # a ramp a wander explained is held until then
        self._long_next_t = -math.inf  # when the long check looks again; until then
        self._long_alarm: Alarm | None = None  # its last finding stands
        self._noise_recorded_t = -math.inf
        # hourly variograms of the history up to their time: a ramp is judged against the
        # noise the process showed before the ramp began (a leak must not widen its own bars)
        self._variograms: deque[tuple[float, Variogram]] = deque(
            maxlen=int(cfg.history_s / cfg.noise_record_every_s) + 2
        )
        self._last_t: float | None = None
        # rises a level shift explained as well as a ramp (steps the finder missed): they
        # count towards a staircase, and stay out of the fits
        self._missed_steps: list[Step] = []
        self.samples = 0
        self.restarts: list[float] = []
        self.peak: float = -math.inf
        self.alarm: Alarm | None = None  # the alarm in force (None when quiet)
        # the latest window's plain line, made a `Fit` only when read (most buckets' never is)
        self._line: tuple[_Fits, int, float] | None = None
        self._line_fit: Fit | None = None
        self._design: tuple[bytes, _Design] | None = None  # the latest columns' design
        self._fraction_t = -math.inf  # the latest bucket time that is not a whole second
        self._ages_whole = all(a.is_integer() and a < 2.0**51 for a in cfg.ramp_ages_s)

    # -- feeding --------------------------------------------------------------------------

    def update(self, t: float, value: float, load: float | None = None) -> Alarm | None:
        """Add one sample (and the load at that moment, when known: sessions, clients);
        returns a new alarm when this sample closed a bucket that raised one."""
        if self._last_t is not None and t < self._last_t:
            raise ValueError(f"time went backwards: {t} after {self._last_t}")
        if not (math.isfinite(value) and math.isfinite(t)):
            return None
        self._last_t = t
        self.samples += 1
        self.peak = max(self.peak, value)
        if self._t0 is None:
            self._t0 = self._series_t0 = t
        bucket = int((t - self._t0) // self.config.bucket_s)
        raised = None
        if self._bucket is not None and bucket != self._bucket:
            raised = self._close_bucket()
        self._bucket = bucket
        self._sum_t += t
        self._sum_v += value
        self._n_in_bucket += 1
        if load is not None and math.isfinite(load):
            self._sum_l += load
            self._n_load += 1
        return raised

    def update_many(
        self,
        times_s: npt.ArrayLike,
        values_bytes: npt.ArrayLike,
        load: npt.ArrayLike | None = None,
    ) -> list[Alarm]:
        """Add many samples at once: the same as `update` one by one, bucketed in numpy."""
        t = np.asarray(times_s, dtype=np.float64)
        v = np.asarray(values_bytes, dtype=np.float64)
        ld = np.full(len(t), np.nan) if load is None else np.asarray(load, dtype=np.float64)
        keep = np.isfinite(t) & np.isfinite(v)
        t, v, ld = t[keep], v[keep], ld[keep]
        if len(t) == 0:
            return []
        if np.any(np.diff(t) < 0) or (self._last_t is not None and t[0] < self._last_t):
            raise ValueError("time went backwards")
        if self._t0 is None:
            self._t0 = self._series_t0 = float(t[0])
        self._last_t = float(t[-1])
        self.samples += len(t)
        self.peak = max(self.peak, float(v.max()))
        buckets, sums_t, sums_v, counts, sums_l, counts_l = _bucket_sums(
            t, v, ld, self._t0, self.config.bucket_s
        )
        raised: list[Alarm] = []
        for bucket, sum_t, sum_v, count, sum_l, count_l in zip(
            buckets.tolist(), sums_t.tolist(), sums_v.tolist(), counts.tolist(),
            sums_l.tolist(), counts_l.tolist(), strict=True,
        ):  # fmt: skip
            if self._bucket is not None and bucket != self._bucket:
                alarm = self._close_bucket()
                if alarm is not None:
                    raised.append(alarm)
            self._bucket = bucket
            self._sum_t += sum_t
            self._sum_v += sum_v
            self._n_in_bucket += count
            self._sum_l += sum_l
            self._n_load += count_l
        return raised

    def flush(self) -> Alarm | None:
        """Close the bucket in progress (at the end of a series)."""
        if self._n_in_bucket == 0:
            return None
        return self._close_bucket()

    def _close_bucket(self) -> Alarm | None:
        t = self._sum_t / self._n_in_bucket
        value = self._sum_v / self._n_in_bucket
        load = self._sum_l / self._n_load if self._n_load else math.nan
        self._sum_t = self._sum_v = self._sum_l = 0.0
        self._n_in_bucket = self._n_load = 0
        if self._count == self._capacity:
            keep = self._keep
            for array in (self._t, self._raw, self._clean, self._load, self._index):
                array[:keep] = array[self._count - keep : self._count]
            self._count = keep
        i = self._count
        self._t[i] = t
        self._raw[i] = value
        self._load[i] = load
        self._index[i] = self._bucket if self._bucket is not None else 0
        self._count += 1
        if load == load:  # known
            self._load_seen = True
        if not t.is_integer():
            self._fraction_t = t
        first = self._series_start()
        self._despike_latest(first)
        return self._evaluate(first)

    def _despike_latest(self, first: int) -> None:
        """Judge the newest buckets for spikes (each again as its neighbours arrive)."""
        n = self._count
        if self._spike_width <= 0 and n - first >= 12:
            self._spike_width = spike_width(self._raw[first:n])
        raw = self._raw[first:n]
        for i in range(max(0, len(raw) - 3), len(raw)):
            self._clean[first + i] = despiked_value(raw, i, self._spike_width)

    # -- deciding -------------------------------------------------------------------------

    def _evaluate(self, first: int) -> Alarm | None:
        """The bucket's decision; `first` is the series' first bucket held."""
        cfg = self.config
        assert self._series_t0 is not None
        n = self._count
        t_now = float(self._t[n - 1])
        self._find_step(first)
        if t_now - self._series_t0 < cfg.warmup_s:
            return None
        self._measure_noise(t_now)
        if self.alarm is not None and self._streak >= cfg.confirm_buckets and n % 5:
            return None  # an episode in force is re-judged every fifth bucket: it still holds
        candidate = self._staircase(t_now) or self._slope(t_now) or self._long_ramp(t_now)
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

    def _series_start(self) -> int:
        """The first held bucket of the series since the last restart."""
        return int(self._t[: self._count].searchsorted(self._series_t0 or 0.0))

    def _find_step(self, first: int) -> None:
        cfg = self.config
        k = cfg.step_buckets
        n = self._count
        if n - first < 2 * k + 30 or self._t[n - 1] < self._steps_quiet_until:
            return
        before = self._raw[n - 2 * k : n - k]
        after = self._raw[n - k : n]
        delta = small_median(after) - small_median(before)
        # A step is large (at least min_step_bytes and step_sigmas noise widths) and sharp
        # (most of it within two buckets: a steep ramp is no step); the noise width, the
        # dearest of the three tests, is measured only for a change that passes the others.
        if abs(delta) < cfg.min_step_bytes:
            return
        window = self._raw[n - 2 * k : n]
        if _sharpest(window.tolist(), delta) < cfg.step_sharpness * abs(delta):
            return
        if abs(delta) < cfg.step_sigmas * self._step_noise(first, n):
            return
        single = np.diff(window) * np.sign(delta)
        at = n - 2 * k + 1 + int(np.argmax(single))
        level_before = small_median(self._raw[max(first, at - k) : at])
        step = Step(float(self._t[at]), delta, level_before)
        previous = self.steps[-1] if self.steps else None
        if (
            previous is not None
            and previous.t > (self._series_t0 or 0.0)
            and (previous.size_bytes > 0) == (delta > 0)
            and step.t - previous.t <= 2 * k * cfg.bucket_s
        ):  # the same step seen again from a later window: one step, its full size
            step = Step(previous.t, previous.size_bytes + delta, previous.level_before)
            self.steps[-1] = step
        else:
            self.steps.append(step)
        # the same step stays in the comparison windows for a while: look again once it left
        self._steps_quiet_until = step.t + 2 * k * cfg.bucket_s
        if delta < 0:
            self._maybe_restart(step, first)

    def _note_missed_step(self, at: int) -> None:
        """Keep a rise that one level shift at bucket `at` explained as well as a ramp (one
        the ramp's own error bars call significant) for the staircase rule, when it is as
        sharp as the step finder asks (most of it within two buckets) and at least
        `missed_step_sigmas` of its noise widths: a step the finder's threshold missed is
        still a step of a staircase. It stays out of the fits
        (taken for a level shift there, a leak's ramp in AR noise would be cut in pieces)."""
        cfg = self.config
        k = cfg.step_buckets
        first = self._series_start()
        if at - k < first or at + k > self._count:
            return
        t_at = float(self._t[at])
        close = 2 * k * cfg.bucket_s
        if any(abs(s.t - t_at) <= close for s in (*self.steps, *self._missed_steps)):
            return
        level_before = small_median(self._raw[at - k : at])
        delta = small_median(self._raw[at : at + k]) - level_before
        if delta <= cfg.min_step_bytes:
            return
        if _sharpest(self._raw[at - k : at + k].tolist(), delta) < cfg.step_sharpness * delta:
            return  # a slow rise is no step, whatever shift fits it
        if delta < cfg.missed_step_sigmas * self._step_noise(first, at + k):
            return  # a wander's rise, a few MB that one shift happens to fit
        horizon = t_at - cfg.staircase_window_s
        self._missed_steps = [s for s in self._missed_steps if s.t >= horizon]
        self._missed_steps.append(Step(t_at, delta, level_before))  # `_staircase` orders them

    def _step_noise(self, first: int, n: int) -> float:
        """The noise width steps are measured against: the `step_reference_buckets` before
        the comparison windows, warm-up left out where enough remain (an encoder's start is
        a jump that would make any later step look small)."""
        cfg = self.config
        k = cfg.step_buckets
        start = max(first, n - 2 * k - cfg.step_reference_buckets)
        settled = self._settled(n)
        if n - 2 * k - settled >= 20:
            start = max(start, settled)
        return _robust_scale(self._raw[start : n - 2 * k])

    def _maybe_restart(self, step: Step, first: int) -> None:
        """A fall back to (near) the level the series started at is a restart: the process
        began again, so its series does too (warm-up, steps and fits start afresh)."""
        cfg = self.config
        start_level = small_median(self._raw[first : first + cfg.step_buckets])
        risen = step.level_before - start_level
        after = step.level_before + step.size_bytes
        # a process that falls that far again and again is a sawtooth (a GC), not restarting
        earlier = [s for s in self.steps[:-1] if s.size_bytes <= 0.5 * step.size_bytes]
        if earlier or step.t - (self._series_t0 or 0.0) < 2 * cfg.warmup_s:
            return
        if risen > max(cfg.min_step_bytes, 0.0) and after <= start_level + 0.5 * risen:
            self.restarts.append(step.t)
            self._series_t0 = step.t
            self._long_next_t, self._long_alarm = -math.inf, None
            self.steps = [s for s in self.steps if s.t <= step.t]  # the old series' history
            self._streak = 0
            self.alarm = None

    def _staircase(self, t_now: float) -> Alarm | None:
        cfg = self.config
        # the steps found are in time order; missed ones, noted late, are merged in by time
        steps = (
            sorted((*self.steps, *self._missed_steps), key=lambda s: s.t)
            if self._missed_steps
            else self.steps
        )
        ups = [
            s for s in steps
            if s.size_bytes > 0 and t_now - s.t <= cfg.staircase_window_s
            and s.t > (self._series_t0 or 0.0)
        ]  # fmt: skip
        if len(ups) < cfg.staircase_steps:
            return None
        # A pool that also shrinks is no staircase: each fall of a like size in the window
        # cancels one rise.
        typical = small_median(np.asarray([s.size_bytes for s in ups]))
        falls = sum(
            1 for s in self.steps
            if s.size_bytes <= -0.5 * typical and s.t > (self._series_t0 or 0.0)
            and t_now - s.t <= cfg.staircase_window_s
        )  # fmt: skip
        if len(ups) - falls < cfg.staircase_steps:
            return None
        ups = ups[-cfg.staircase_steps :]
        rise = sum(s.size_bytes for s in ups)
        n = self._count
        level_now = small_median(self._raw[max(0, n - cfg.step_buckets) : n])
        kept = level_now - ups[0].level_before
        if kept < cfg.staircase_kept_share * rise:
            return None
        if self.alarm is None and level_now <= self._high_before(ups[-1].t):
            return None  # back to a level it held before: a pool moving among its levels
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

    def _high_before(self, t: float) -> float:
        """The highest level the series held (a median of `step_buckets` buckets) between its
        warm-up and `t`; -inf without so much history."""
        k = self.config.step_buckets
        n = self._count
        held = self._raw[self._settled(n) : int(self._t[:n].searchsorted(t))]
        if len(held) < k:
            return -math.inf
        return float(np.median(np.lib.stride_tricks.sliding_window_view(held, k), axis=1).max())

    def _window(self, t_now: float) -> tuple[int, int]:
        cfg = self.config
        start_t = max(self._settled_t, t_now - cfg.history_s)
        return int(self._t[: self._count].searchsorted(start_t)), self._count

    def _measure_noise(self, t_now: float) -> None:
        """Once an hour: the variogram of the series' own history (warm-up left out)."""
        cfg = self.config
        if t_now - self._noise_recorded_t < cfg.noise_record_every_s:
            return
        n = self._count
        settled = self._settled(n)
        if n - settled < cfg.min_points:
            return
        self._noise_recorded_t = t_now
        self._spike_width = spike_width(self._raw[settled:n])
        self._variograms.append((t_now, self._variogram(settled, n, self._clean[settled:n])))

    @property
    def _settled_t(self) -> float:
        """When the series' warm-up ends."""
        return (self._series_t0 or 0.0) + self.config.warmup_s

    def _settled(self, n: int) -> int:
        """The first of the first `n` buckets past the series' warm-up."""
        return int(self._t[:n].searchsorted(self._settled_t))

    def _history_s(self, t_now: float) -> float:
        """How long the series has run past its warm-up at `t_now`."""
        return t_now - (self._series_t0 or 0.0) - self.config.warmup_s

    def _variogram(self, lo: int, n: int, y: npt.NDArray[np.float64]) -> Variogram:
        """The variogram of `y` (buckets lo..n), less what load explains where it is usable."""
        load = self._load[lo:n]
        if _usable_load(load):
            design = np.column_stack([np.ones(len(y)), load])
            y = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
        max_lag = int(self.config.history_s / self.config.bucket_s)
        return Variogram.measure(self._index[lo:n], y, max_lag)

    def steady_noise(self) -> Variogram | None:
        """The variogram of the latest series after its warm-up, as `noise_from` gives it:
        load taken out, and the level shift of every step found (a pool that grew or shrank,
        a purge) taken out too, so that a day of pool moves does not pass for noise in
        another run's error bars. None when the series is too short."""
        n = self._count
        settled = self._settled(n)
        if n - settled < self.config.min_points:
            return None
        t = self._t[settled:n]
        y = self._clean[settled:n].copy()
        for step in self.steps:
            if step.t > (self._series_t0 or 0.0):
                y[t >= step.t] -= step.size_bytes
        measured = self._variogram(settled, n, y)
        return measured if len(measured.lags) else None

    def _slope(self, t_now: float) -> Alarm | None:
        cfg = self.config
        lo, n = self._window(t_now)
        t = self._t[lo:n]
        if n - lo < cfg.min_points or t_now - t[0] < cfg.min_fit_s:
            return None
        y = self._clean[lo:n]
        index = self._index[lo:n]
        load = self._load[lo:n]
        nuisance, with_load = self._nuisance(t, load, t_now)
        origins = [float(t[0])] + [t_now - a for a in cfg.ramp_ages_s if t_now - a > t[0]]
        if with_load:  # memory per session growing: load times the ramp
            columns = _ramps(t, origins)
            design = _Design(np.vstack([columns, load * columns]), nuisance)
        else:
            design = self._design_for(t, t_now, origins, nuisance)
        margin = self._margin(t_now, float(t_now - t[0]))
        z_needed = cfg.z_alarm + margin
        fits = _Fits(y, design.columns, nuisance, design)
        if fits.ok[0]:
            self._line = (fits, len(t), float(t[-1] - max(origins[0], float(t[0]))))
            self._line_fit = None
        if not fits.may_reach(z_needed) or max(fits.z_model) < z_needed:
            return None  # the cheap screen: the careful error below is never smaller
        tests = [_Test(o, "memory") for o in origins]
        if with_load:
            tests += [_Test(o, "per-session") for o in origins]
        mean_load = float(np.mean(load)) if with_load else 1.0
        # the most significant first: the first that passes the careful checks is the alarm
        for i in np.argsort(-np.asarray(fits.z_model)).tolist():
            test = tests[i]
            per_load = test.kind == "per-session"
            growth_h = float(fits.slopes[i]) * (mean_load if per_load else 1.0) * HOUR
            if fits.z_model[i] < z_needed:
                break  # the cheap screen: the careful error below is never smaller
            if growth_h < cfg.min_slope_bytes_per_hour:
                continue
            fit = fits.candidate(i)
            variance, covered = self._variance(fit, index, test.origin)
            z = fit.slope / math.sqrt(variance)
            # a variogram from less history than the fit spans has not seen its slow noise
            if z < z_needed + (0.0 if covered else cfg.learning_z_margin):
                continue
            known = math.nan
            if not per_load:
                shift = missed_step(t, y - fit.nuisance_part, test.origin, fit.rss)
                if shift is not None:  # a level shift fits as well in least squares
                    ramp_wins = False
                    if self._fits_noise:  # does the fitted noise prefer the ramp?
                        known, as_step = self._fitted_ratios(t_now, test.origin, False, t[shift])
                        ramp_wins = known > as_step
                    if not ramp_wins:  # a step the finder missed
                        self._note_missed_step(lo + shift)
                        continue
            ratio = self._against_wander(t_now, test.origin, per_load, known)
            if ratio is None:
                return None  # a wander explains the most significant ramp as well
            span = float(t_now - max(test.origin, float(t[0])))
            se_h = growth_h / z
            what = "memory per session grew" if per_load else "growing"
            odds = "" if math.isnan(ratio) else f", likelihood ratio {ratio:.0f} against a wander"
            return Alarm(
                t=t_now, kind="slope", slope_bytes_per_hour=growth_h,
                ci_bytes_per_hour=(growth_h - 1.96 * se_h, growth_h + 1.96 * se_h),
                window_s=span, z=z, level_bytes=float(self._raw[n - 1]),
                reason=f"{what} {growth_h / MB:.1f} MB/h for the last "
                f"{format_duration(span)} (z = {z:.1f}{odds}){self._young(t_now, span)}",
            )  # fmt: skip
        return None

    def _young(self, t_now: float, span_s: float) -> str:
        """What a slope alarm's reason adds when the history before its ramp is shorter than
        the ramp and no earlier run's noise was given: the first rise of a cycle or of a
        slow wander looks the same then (the bench's cycle family alarms there and only
        there), and nothing yet tells it from a leak that began with the process."""
        history = self._history_s(t_now)
        if self.noise_prior is not None or history - span_s >= span_s:
            return ""
        return (
            f"; on {format_duration(history)} of history, a cycle or wander slower than that"
            " cannot be told from a leak yet (an earlier run's noise can: --noise-from)"
        )

    def _long_ramp(self, t_now: float) -> Alarm | None:
        """A leak older than the window, or under a noise whose long swings widen the
        window's error bars (a pool that moves by tens of MB), can stay under the slope
        test's z for good: the variogram from before a window that starts inside the leak
        holds the leak itself, and the wander check's ramp then starts at the window, not
        at the leak. So every `long_every_s`, once the series since its warm-up outlasts
        the window, the best onset (in least squares, on a grid of `long_every_s`; level,
        steps and load held) is fitted against a wander on all the history held, as the
        wander check fits a ramp, and a likelihood ratio of `long_z` squared alarms, unless
        one level shift explains the rise as well (a step the finder missed). Its finding
        stands until the next look."""
        cfg = self.config
        if t_now < self._long_next_t:
            return self._long_alarm
        self._long_next_t = t_now + cfg.long_every_s - 0.5 * cfg.bucket_s
        self._long_alarm = None
        if cfg.long_z <= 0 or not self._fits_noise:
            return None
        n = self._count
        lo = self._settled(n)
        t = self._t[lo:n]
        if n - lo < cfg.min_points or t_now - t[0] < cfg.history_s:
            return None
        onsets = np.arange(
            float(t[0]) + cfg.long_every_s, t_now - cfg.long_every_s, cfg.long_every_s
        )
        if len(onsets) == 0:
            return None
        nuisance, _ = self._nuisance(t, self._load[lo:n], t_now)
        fits = _Fits(self._clean[lo:n], _ramps(t, onsets.tolist()), nuisance)
        gains = np.where(
            fits.ok & (fits.slopes * HOUR >= cfg.min_slope_bytes_per_hour),
            fits.yy - np.asarray(fits.rss), -1.0,
        )  # fmt: skip
        best = int(np.argmax(gains))
        if gains[best] <= 0:
            return None
        onset = float(onsets[best])
        shift = missed_step(t, fits.y_res, onset, fits.rss[best])
        ratio, as_step = self._fitted_ratios(
            t_now, onset, False, None if shift is None else float(t[shift])
        )
        if not ratio >= cfg.long_z**2 or math.isinf(ratio) or as_step >= ratio:
            return None
        growth_h = float(fits.slopes[best]) * HOUR
        se_h = growth_h / math.sqrt(ratio)
        span = t_now - onset
        self._long_alarm = Alarm(
            t=t_now, kind="slope", slope_bytes_per_hour=growth_h,
            ci_bytes_per_hour=(growth_h - 1.96 * se_h, growth_h + 1.96 * se_h),
            window_s=span, z=math.sqrt(ratio), level_bytes=float(self._raw[n - 1]),
            reason=f"growing {growth_h / MB:.1f} MB/h for the last {format_duration(span)}, "
            f"after a flatter history (likelihood ratio {ratio:.0f} against a wander "
            "fitted to the whole series)",
        )  # fmt: skip
        return self._long_alarm

    def _against_wander(
        self, t_now: float, origin: float, per_load: bool, known: float = math.nan
    ) -> float | None:
        """The ramp from `origin`'s likelihood ratio against a wander, fitted to the series'
        history since its warm-up (`_fitted_ratios`, or `known` where the caller has it);
        None when it is below `wander_z` squared (and for the next `wander_recheck_buckets`,
        which are not fitted again). NaN when not asked: the check is off, an episode is
        already in force, or an earlier run's noise (`noise_prior`) already told the error
        bars what this history cannot."""
        cfg = self.config
        if not self._fits_noise or self.alarm is not None:
            return math.nan
        if t_now < self._wander_until:
            return None
        ratio = known if not math.isnan(known) else self._fitted_ratios(t_now, origin, per_load)[0]
        if ratio < cfg.wander_z**2:
            self._wander_until = t_now + (cfg.wander_recheck_buckets - 0.5) * cfg.bucket_s
            return None
        return ratio

    @property
    def _fits_noise(self) -> bool:
        """Whether alarms ask the noise fitted to this history (`vramguard.wander`): with the
        wander check on, and no earlier run's noise given (that prior already told the error
        bars what a young history cannot; without the wander check after it, a ramp the
        fitted noise preferred to a missed step would rest on the slope test alone)."""
        return self.config.wander_z > 0 and self.noise_prior is None

    def _fitted_ratios(
        self, t_now: float, origin: float, per_load: bool, step_at: float | None = None
    ) -> tuple[float, float]:
        """Likelihood ratios with the noise fitted (`vramguard.wander`) over the series'
        history since its warm-up, level, steps and load held: of the ramp from `origin` (per
        session where `per_load` and load is usable), and of one level shift at `step_at`
        instead (NaN without one). The larger explains the rise better."""
        n = self._count
        lo = self._settled(n)
        t = self._t[lo:n]
        load = self._load[lo:n]
        nuisance, with_load = self._nuisance(t, load, t_now)
        ramp = np.maximum(t - origin, 0.0)
        alternatives = [load * ramp if per_load and with_load else ramp]
        if step_at is not None:
            alternatives.append((t >= step_at).astype(np.float64))
        ratios = _wander_ratios(self.config, t, self._clean[lo:n], nuisance, alternatives)
        return ratios[0], ratios[1] if step_at is not None else math.nan

    def _nuisance(
        self, t: npt.NDArray[np.float64], load: npt.NDArray[np.float64], t_now: float
    ) -> tuple[list[npt.NDArray[np.float64]], bool]:
        """The columns a fit over buckets at `t` holds besides its ramps, and whether load is
        one: a level shift at each upward step found in that stretch (a pool that grew once;
        a fall stays in the data, or a GC sawtooth would pass for a climb), and the load
        where it is usable."""
        rises = [s.t for s in self.steps if s.size_bytes > 0 and t[0] < s.t <= t_now]
        nuisance = [(t >= s).astype(np.float64) for s in rises]
        with_load = self._load_seen and _usable_load(load)
        if with_load:
            nuisance.append(load)
        return nuisance, with_load

    def _design_for(
        self,
        t: npt.NDArray[np.float64],
        t_now: float,
        origins: list[float],
        nuisance: Sequence[npt.NDArray[np.float64]],
    ) -> _Design:
        """The ramps' design, reused while their columns repeat exactly, so the figures are
        the very ones a fresh design gives; with nuisance terms, fresh. Where every time is a
        whole number of seconds (Prometheus's, a one-a-minute log's), `t - origin` is exact,
        so the columns are those of the times relative to now: those are compared, and the
        columns are built only when they changed. Otherwise the columns are compared, byte
        for byte."""
        if nuisance:
            return _Design(_ramps(t, origins), nuisance)
        columns = None
        if self._whole_seconds(t, t_now):
            key = b"relative" + (t - t_now).tobytes()
        else:
            columns = _ramps(t, origins)
            key = b"columns" + columns.tobytes()
        if self._design is None or self._design[0] != key:
            columns = _ramps(t, origins) if columns is None else columns
            self._design = (key, _Design(columns, ()))
        return self._design[1]

    def _whole_seconds(self, t: npt.NDArray[np.float64], t_now: float) -> bool:
        """Whether the window's times and its ramps' ages are whole seconds, small enough that
        their differences are exact."""
        return (
            self._ages_whole
            and float(t[0]) > self._fraction_t
            and max(abs(float(t[0])), abs(t_now)) < 2.0**51
        )

    def _margin(self, t_now: float, span_s: float) -> float:
        """Extra z asked while the series' own history is short next to the window tested:
        the variogram's long lags rest on few increments then."""
        cfg = self.config
        if self._history_s(t_now) >= cfg.learned_history_factor * span_s:
            return 0.0
        return cfg.learning_z_margin

    def _variance(
        self, fit: _Fitted, index: npt.NDArray[np.int64], origin: float
    ) -> tuple[float, bool]:
        """The slope's variance: the largest of AR(1), batch means at every scale, and the
        variogram of the series' history before the ramp began (each sound for some noise,
        none for all); and whether that variogram saw as much history as the fit spans."""
        weights_sq = float(fit.weights @ fit.weights)
        variance = long_run_variance(index, fit.residuals, fit.dof) * weights_sq
        before = [v for end, v in self._variograms if end <= origin + self.config.bucket_s]
        if self.noise_prior is not None:  # an earlier run's noise, pooled with this one's
            own = before[-1] if before else None
            return max(variance, self.variogram_variance(own, index, fit.weights), 1e-30), True
        chosen = before[-1] if before else self._variograms[-1][1] if self._variograms else None
        if chosen is None:  # none from before the ramp yet: the latest, leak and all
            return max(variance, 1e-30), False
        variance = max(variance, chosen.variance(index, fit.weights))
        covered = chosen.history_buckets >= int(index[-1] - index[0]) + 1
        return max(variance, 1e-30), covered

    def variogram_variance(
        self, own: Variogram | None, index: npt.NDArray[np.int64], weights: npt.NDArray[np.float64]
    ) -> float:
        """Var(weights . x) from the run's own variogram `own`, pooled with `noise_prior`
        where there is one, each weighted by the history it was measured over (as one
        variogram of both histories would be). 0 when there is neither."""
        measured = [v for v in (own, self.noise_prior) if v is not None and len(v.lags)]
        if len(measured) < 2:
            return measured[0].variance(index, weights) if measured else 0.0
        total = sum(v.history_buckets for v in measured)
        return sum(v.history_buckets * v.variance(index, weights) for v in measured) / total

    # -- reading --------------------------------------------------------------------------

    @property
    def t0(self) -> float | None:
        return self._t0

    @property
    def last_fit(self) -> Fit | None:
        """The plain line through the latest window judged (slope and its AR(1) error)."""
        if self._line_fit is None and self._line is not None:
            self._line_fit = self._line[0].fit(0, self._line[1], self._line[2])
        return self._line_fit

    @property
    def variograms(self) -> list[Variogram]:
        """The hourly variograms of the series' history, oldest first."""
        return [v for _, v in self._variograms]

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
    load: Sequence[float] | npt.ArrayLike | None = None,
    noise_prior: Variogram | None = None,
) -> Trend:
    """The offline verdict on a series: the online detector replayed over it, sample by
    sample, plus the growth over the whole series (steps taken out, as online).

    `load` (sessions, clients: one value per sample, NaN where unknown) lets memory that
    follows load pass as load, and tests whether memory per unit of load grows.
    `verdict` is `leak` when the online detector alarmed at any point or the whole series
    grows beyond doubt; `insufficient-data` when the series is shorter than
    `min_duration_s` (after warm-up) or has too few points. `time_to_exhaustion_s` is
    against `budget_bytes` (the device total, say) at the whole-series slope.
    `noise_prior` is the same process's noise from an earlier run (`noise_from`).
    """
    cfg = config or DetectorConfig()
    t, v, ld = _series(times_s, values_bytes, load)
    if len(t) == 0:
        needs = cfg.warmup_s + cfg.min_duration_s
        return Trend("insufficient-data", None, None, None, None, None, 0, 0.0,
                     reason="no samples", needs_more_s=needs)  # fmt: skip
    detector = LeakDetector(cfg, noise_prior=noise_prior)
    detector.update_many(t, v, ld)
    detector.flush()
    return _verdict(detector, t, v, ld, cfg, budget_bytes)


def noise_from(
    times_s: Sequence[float] | npt.ArrayLike,
    values_bytes: Sequence[float] | npt.ArrayLike,
    config: DetectorConfig | None = None,
    load: Sequence[float] | npt.ArrayLike | None = None,
) -> Variogram | None:
    """The noise a series showed (the variogram of its last day and a half, warm-up left
    out, spikes replaced, what load explains and the steps found taken out, a steady trend
    centred away), as a
    prior for judging another run of the same process on the same `config`: a run's first
    hours cannot tell a slow wander from a leak, its previous run can. None when the series
    is too short to have measured any."""
    detector = LeakDetector(config or DetectorConfig())
    detector.update_many(*_series(times_s, values_bytes, load))
    detector.flush()
    return detector.steady_noise()


def _series(
    times_s: Sequence[float] | npt.ArrayLike,
    values_bytes: Sequence[float] | npt.ArrayLike,
    load: Sequence[float] | npt.ArrayLike | None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64] | None]:
    """A series as arrays, its samples with no finite time or value left out; ValueError
    for arrays of other shapes or times that go backwards."""
    t = np.asarray(times_s, dtype=np.float64)
    v = np.asarray(values_bytes, dtype=np.float64)
    ld = None if load is None else np.asarray(load, dtype=np.float64)
    if t.shape != v.shape or t.ndim != 1 or (ld is not None and ld.shape != t.shape):
        raise ValueError("times, values and load must be one-dimensional and of equal length")
    if len(t) and np.any(np.diff(t) < 0):
        raise ValueError("times must not go backwards")
    finite = np.isfinite(v) & np.isfinite(t)
    return t[finite], v[finite], None if ld is None else ld[finite]


def _load_state(load: npt.NDArray[np.float64] | None) -> Literal["unknown", "used", "constant"]:
    if load is None or not np.any(np.isfinite(load)):
        return "unknown"
    known = load[np.isfinite(load)]
    return "used" if float(np.ptp(known)) > 0 else "constant"


def _verdict(
    detector: LeakDetector,
    t: npt.NDArray[np.float64],
    v: npt.NDArray[np.float64],
    load: npt.NDArray[np.float64] | None,
    cfg: DetectorConfig,
    budget_bytes: float | None,
) -> Trend:
    t0 = float(t[0])
    duration = float(t[-1] - t0)
    first = detector.alarms[0] if detector.alarms else None
    steps = tuple(detector.steps)
    peak = float(v.max())
    load_state = _load_state(load)
    common: dict[str, Any] = {
        "steps": steps,
        "alarms": len(detector.alarms),
        "alarm_slope_bytes_per_hour": first.slope_bytes_per_hour if first else None,
        "restarts": tuple(r - t0 for r in detector.restarts),
        "load": load_state,
    }
    first_t = None if first is None else first.t - t0
    # Whole-series growth over the last series (since the last restart), warm-up left out,
    # upward steps taken out as online (unless they were the leak: a staircase).
    series_start = detector.restarts[-1] if detector.restarts else t0
    keep = t >= series_start + cfg.warmup_s
    series_t, series_v = t[keep], v[keep]
    series_load = None if load is None else load[keep]
    staircase = any(a.kind == "staircase" for a in detector.alarms)
    rises = [] if staircase else [s.t for s in steps if s.size_bytes > 0 and s.t > series_start]
    fit = None
    if len(series_t) >= cfg.min_points:
        fit = _whole_series_fit(detector, series_t, series_v, series_load, rises, cfg)
    judged = float(t[-1] - series_start) - cfg.warmup_s
    if fit is None or judged < cfg.min_duration_s:
        needs = max(0.0, cfg.min_duration_s - judged)
        if first is not None:
            return Trend(
                "leak",
                None,
                None,
                first_t,
                peak,
                None,
                len(t),
                duration,
                reason=_alarm_reason(first, t0),
                **common,
            )  # type: ignore[arg-type]
        if needs > 0:
            why = (
                f"too short to judge: {format_duration(needs)} more of samples needed "
                f"(after a warm-up of {format_duration(cfg.warmup_s)}), or a shorter --window"
            )
        else:
            why = (
                f"too few samples to judge: {len(series_t)} after the warm-up, "
                f"{cfg.min_points} needed (sample more often, or run longer)"
            )
        return Trend(
            "insufficient-data", None, None, None, peak, None, len(t), duration,
            reason=why, needs_more_s=needs if needs > 0 else None, **common,
        )  # fmt: skip
    slope_h, z, ratio = fit
    se_h = slope_h / z if z > 0 else math.inf
    ci = (slope_h - 1.96 * se_h, slope_h + 1.96 * se_h) if math.isfinite(se_h) else None
    significant = z >= cfg.z_alarm and slope_h >= cfg.min_slope_bytes_per_hour
    wander = significant and ratio < cfg.wander_z**2  # NaN (not asked) is no wander
    grows = significant and not wander
    verdict: Verdict = "leak" if first is not None or grows else "stable"
    if first is not None:
        reason = _alarm_reason(first, t0)
    elif grows:
        reason = (f"the whole series grows {slope_h / MB:.1f} MB/h beyond doubt (z = {z:.1f}), "
                  "though no window alarmed on its own")  # fmt: skip
    elif wander:
        reason = (f"no sustained growth: {slope_h / MB:+.2f} MB/h over the series "
                  f"(z = {z:.1f}), but a slow wander explains it as well "
                  f"(likelihood ratio {ratio:.1f})")  # fmt: skip
    else:
        reason = f"no sustained growth ({slope_h / MB:+.2f} MB/h over the series, z = {z:.1f})"
    if load_state == "unknown":
        reason += "; load unknown (memory that follows load would read as growth)"
    elif load_state == "constant":
        reason += "; the load column never changed, so load explains nothing"
    exhaustion = None
    if budget_bytes is not None and verdict == "leak":
        rate = slope_h if slope_h > 0 else (first.slope_bytes_per_hour if first else 0.0)
        if rate > 0:
            exhaustion = max(0.0, (budget_bytes - float(v[-1])) / rate * HOUR)
    return Trend(verdict, slope_h, ci, first_t, peak, exhaustion, len(t), duration,
                 reason=reason, **common)  # fmt: skip


def _alarm_reason(alarm: Alarm, t0: float) -> str:
    return f"alarm at {format_duration(alarm.t - t0)}: {alarm.reason}"


def _whole_series_fit(
    detector: LeakDetector,
    t: npt.NDArray[np.float64],
    v: npt.NDArray[np.float64],
    load: npt.NDArray[np.float64] | None,
    rises: Sequence[float],
    cfg: DetectorConfig,
) -> tuple[float, float, float] | None:
    """(growth in bytes an hour, z, likelihood ratio against a wander) of a line through
    the whole series, on buckets, with level shifts at rises and load as a regressor where it
    moves; the error is the most conservative of AR(1), batch means and the detector's last
    variogram. The ratio is NaN unless the growth is significant and the check is on."""
    ld = np.full(len(t), np.nan) if load is None else load
    bidx, sums_t, sums_v, counts, sums_l, counts_l = _bucket_sums(
        t, v, ld, float(t[0]), cfg.bucket_s
    )
    bt = sums_t / counts
    bv = despike(sums_v / counts)
    nuisance = [(bt >= s).astype(np.float64) for s in rises if bt[0] < s <= bt[-1]]
    if load is not None:
        bl = np.where(counts_l > 0, sums_l / np.maximum(counts_l, 1), np.nan)
        if _usable_load(bl):
            nuisance.append(bl)
    if len(bt) < cfg.min_points:
        return None
    fits = _Fits(bv, (bt - bt[0])[None, :], nuisance)
    if not fits.ok[0]:
        return None
    fit = fits.candidate(0)
    variance = long_run_variance(bidx, fit.residuals, fit.dof) * float(fit.weights @ fit.weights)
    own = detector.variograms[-1] if detector.variograms else None
    variance = max(variance, detector.variogram_variance(own, bidx, fit.weights))
    slope_h, z = fit.slope * HOUR, fit.slope / math.sqrt(max(variance, 1e-30))
    ratio = math.nan
    if detector._fits_noise and z >= cfg.z_alarm and slope_h >= cfg.min_slope_bytes_per_hour:
        ratio = _wander_ratios(cfg, bt, bv, nuisance, [bt - bt[0]])[0]
    return slope_h, z, ratio


def _wander_ratios(
    cfg: DetectorConfig,
    t: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    nuisance: Sequence[npt.NDArray[np.float64]],
    alternatives: Sequence[npt.NDArray[np.float64]],
) -> list[float]:
    """`likelihood_ratios` on the config's scale: means of a `wander_means`th of the
    window, time constants up to `wander_tau_windows` windows."""
    return likelihood_ratios(
        t, y, nuisance, alternatives, cfg.history_s / cfg.wander_means,
        cfg.wander_tau_windows * cfg.history_s,
    )  # fmt: skip
