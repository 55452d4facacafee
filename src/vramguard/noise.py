"""How much a memory series moves on its own: error bars that do not assume one noise model.

A slope's error needs the noise's long-run variance (its spectrum near zero frequency).
Assuming AR(1) and reading it from the lag-1 autocorrelation underestimates it badly when
white noise sits on a slow wander (white 3 MB + AR(1) 5 MB at phi 0.95: 5x too small), the
most ordinary shape a real RSS or GPU series has. Here:

- `long_run_variance` takes the larger of the AR(1) figure and batch means at every scale
  from 2 buckets up to an eighth of the window (`m * Var(means of m buckets)`), blocks
  placed by time so gaps are gaps. For white noise every scale gives the variance; for a
  mixture the scales past the slow component's time constant give its full weight.
- `despike` replaces single-bucket outliers (a spike, a torn reading) by the median of
  their neighbours (a Hampel filter), so one sample cannot move a bucket.
- `missed_step` asks whether one level shift explains a rise as well as a ramp does: a
  pool that grew once is not a leak, however its noise hid the step from the step finder.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def ar1_long_run_variance(residuals: Array, dof: int) -> tuple[float, float, float]:
    """(variance, rho, long-run variance) of residuals under AR(1); rho bias-corrected and
    clipped to [0, 0.98]."""
    rss = float(residuals @ residuals)
    if rss <= 0 or dof <= 0:
        return 0.0, 0.0, 0.0
    n = len(residuals)
    rho = float(residuals[1:] @ residuals[:-1]) / rss
    rho = min(max(rho + (1 + 3 * rho) / n, 0.0), 0.98)  # small-sample bias, then clip
    variance = rss / dof
    return variance, rho, variance * (1 + rho) / (1 - rho)


def batch_means_long_run_variance(index: npt.NDArray[np.int64], residuals: Array) -> float:
    """The largest `m * Var(block means)` over block sizes m = 2, 4, 8, ... buckets with at
    least 8 blocks; `index` is each residual's bucket number (gaps are missing numbers)."""
    n = len(residuals)
    if n < 16:
        return 0.0
    span = int(index[-1] - index[0]) + 1
    best = 0.0
    m = 2
    if span == n:  # no gaps: blocks are slices, their sums differences of one cumsum
        cum = np.concatenate(([0.0], np.cumsum(residuals)))
        while n // m >= 8:
            means = (cum[m : n + 1 : m] - cum[0 : n + 1 - m : m]) / m
            best = max(best, float(np.var(means, ddof=1)) * m)
            m *= 2
        return best
    while span // m >= 8:
        block = (index - index[0]) // m
        starts = np.concatenate(([0], np.flatnonzero(np.diff(block)) + 1))
        counts = np.diff(np.concatenate((starts, [n]))).astype(np.float64)
        means = np.add.reduceat(residuals, starts) / counts
        full = counts >= m / 2  # blocks a gap emptied most of say little
        if int(full.sum()) >= 8:
            lrv = float(np.var(means[full], ddof=1)) * float(np.mean(counts[full]))
            best = max(best, lrv)
        m *= 2
    return best


def long_run_variance(index: npt.NDArray[np.int64], residuals: Array, dof: int) -> float:
    """The more conservative of AR(1) and batch means at every scale."""
    return max(ar1_long_run_variance(residuals, dof)[2],
               batch_means_long_run_variance(index, residuals))  # fmt: skip


def despike(values: Array, half_width: int = 2, sigmas: float = 5.0) -> Array:
    """A Hampel filter: a value further than `sigmas` robust widths from the median of its
    neighbours (`half_width` each side; one side at the ends) becomes that median. The width
    is the median absolute deviation of first differences over the whole series, so a
    level that moves slowly is never clipped."""
    n = len(values)
    if n < 2 * half_width + 3:
        return values
    width = spike_width(values)
    if width <= 0:
        return values
    padded = np.concatenate((values[half_width:0:-1], values, values[-2 : -half_width - 2 : -1]))
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half_width + 1)
    medians = np.median(windows, axis=1)
    far = np.abs(values - medians) > sigmas * width
    if not far.any():
        return values
    return np.where(far, medians, values)


def median(values: Array, in_place: bool = False) -> float:
    """The median of a 1-D array, exact, by partition (np.median's overhead is some 40 us,
    ten times the work on the few hundred values the detector takes medians of);
    `in_place` partitions an array of the caller's own where it lies, without a copy."""
    n = len(values)
    middle = n // 2
    kth = middle if n % 2 else (middle - 1, middle)
    if in_place:
        values.partition(kth)
        part = values
    else:
        part = np.partition(values, kth)
    return float(part[middle]) if n % 2 else float((part[middle - 1] + part[middle]) / 2)


def small_median(values: Array) -> float:
    """The median of a handful of values (a Python sort costs less than numpy's call here)."""
    ordered: list[float] = sorted(values.tolist())
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def spike_width(values: Array) -> float:
    """The noise width `despike` measures spikes against: MAD of first differences."""
    if len(values) < 3:
        return 0.0
    return 1.4826 * median(np.abs(np.diff(values))) / math.sqrt(2.0)


def despiked_value(
    values: Array, i: int, width: float, half_width: int = 2, sigmas: float = 5.0
) -> float:
    """`despike` for one value, from the neighbours that exist (online: the latest values
    are judged on one side, and judged again as their right-hand neighbours arrive)."""
    middle = small_median(values[max(0, i - half_width) : i + half_width + 1])
    value = float(values[i])
    return middle if width > 0 and abs(value - middle) > sigmas * width else value


def _best_split(cum: Array, cum2: Array, lo: int, hi: int, first: int) -> tuple[float, int]:
    """The smallest two-level residual sum of squares of y[lo:hi] with the split at a point
    k >= first, from prefix sums (cum[i] = sum of y[:i])."""
    k = np.arange(max(first, lo + 1), hi)
    if len(k) == 0:
        total = cum2[hi] - cum2[lo] - (cum[hi] - cum[lo]) ** 2 / max(hi - lo, 1)
        return float(total), -1
    left = cum2[k] - cum2[lo] - (cum[k] - cum[lo]) ** 2 / (k - lo)
    right = cum2[hi] - cum2[k] - (cum[hi] - cum[k]) ** 2 / (hi - k)
    best = int(np.argmin(left + right))
    return float(left[best] + right[best]), int(k[best])


def missed_step(t: Array, y: Array, ramp_from: float, rss_ramp: float) -> int | None:
    """Where one level shift, placed anywhere after `ramp_from` minus half the ramp's age,
    fits `y` at least as well as the ramp did (residual sum of squares `rss_ramp`): two
    levels against a level and a slope, the same number of parameters. The index of the
    first point after the shift (a step the step finder missed), or None when no shift fits
    as well. (Two shifts were tried too: they explain an early leak under AR noise as often
    as a pool's two steps.)"""
    n = len(y)
    lo = max(1, int(np.searchsorted(t, ramp_from - (t[-1] - ramp_from) / 2)))
    if n - lo < 3:
        return None
    cum = np.concatenate(([0.0], np.cumsum(y)))
    cum2 = np.concatenate(([0.0], np.cumsum(y * y)))
    rss, at = _best_split(cum, cum2, 0, n, lo)
    return at if rss <= rss_ramp else None


class Variogram:
    """The process's own variogram, gamma(h) = Var(x[t+h] - x[t]) / 2 at lags of h buckets,
    from robust spreads of its increments (centred on their median, so a steady trend or a
    leak in part of the history barely moves it). From it, the variance of any linear
    estimate whose weights sum to zero (a slope beside a level) follows without a noise
    model: Var(w . x) = -sum_ij w_i w_j gamma(|i - j|). This holds for white noise, AR
    mixtures, slow wander and random walks alike, as long as the history is long enough to
    hold the lags the estimate spans."""

    def __init__(
        self,
        lags: npt.NDArray[np.int64],
        gamma: Array,
        history_buckets: int,
        model: tuple[float, float, float] | None = None,
    ) -> None:
        self.lags = lags
        self.gamma = gamma
        self.history_buckets = history_buckets
        self.model = model  # nugget, partial sill, time constant (buckets)

    @classmethod
    def measure(cls, index: npt.NDArray[np.int64], values: Array, max_lag: int) -> Variogram:
        """From values at bucket numbers `index` (gaps allowed), lags 1..max_lag on a
        geometric grid; a lag with under 8 increments is left out."""
        span = int(index[-1] - index[0]) + 1
        grid = np.full(span, np.nan)
        grid[index - index[0]] = values
        candidates = np.unique(np.round(np.geomspace(1, max(1, max_lag), 40)).astype(np.int64))
        lags: list[int] = []
        gammas: list[float] = []
        for h in candidates.tolist():
            if 2 * h > span:  # half the history at most: longer lags rest on too little
                break
            d = grid[h:] - grid[:-h]
            d = d[np.isfinite(d)]
            if len(d) < 8:  # too few pairs this far apart (samples sparser than buckets)
                continue
            spread = 1.4826 * median(np.abs(d - median(d)))
            lags.append(h)
            gammas.append(spread * spread / 2)
        if not gammas:
            return cls(np.zeros(0, dtype=np.int64), np.zeros(0), len(values))
        lag_array = np.asarray(lags, dtype=np.int64)
        model = _fit_exponential(lag_array, np.asarray(gammas))
        nugget, sill, tau = model
        smooth = nugget + sill * (1.0 - np.exp(-lag_array / tau))
        return cls(lag_array, smooth, len(values), model)

    def at(self, h: Array) -> Array:
        """gamma at lags h (buckets): interpolated, and past the last lag measured held at
        the larger of its last value and the smooth fit's (a wander still rising there goes
        on rising)."""
        if len(self.lags) == 0:
            return np.zeros(len(h))
        inside = np.interp(h, self.lags, self.gamma)
        if self.model is None:
            return inside
        nugget, sill, tau = self.model
        beyond = nugget + sill * (1.0 - np.exp(-h / tau))
        return np.where(h > self.lags[-1], np.maximum(inside, beyond), inside)

    def variance(self, index: npt.NDArray[np.int64], weights: Array) -> float:
        """Var(weights . x) for x at bucket numbers `index`, weights summing to zero."""
        span = int(index[-1] - index[0]) + 1
        grid = np.zeros(span)
        grid[index - index[0]] = weights
        size = 1 << int(2 * span - 1).bit_length()
        spectrum = np.fft.rfft(grid, size)
        autocorrelation = np.fft.irfft(spectrum * np.conj(spectrum), size)[1:span]
        lags = np.arange(1, span, dtype=np.float64)
        return max(0.0, -2.0 * float(autocorrelation @ self.at(lags)))


def _fit_exponential(lags: npt.NDArray[np.int64], gamma: Array) -> tuple[float, float, float]:
    """gamma(h) = nugget + sill * (1 - exp(-h / tau)), fitted in least squares over a grid
    of tau (nugget and sill non-negative). White noise is a nugget alone; an AR(1) or a
    mean-reverting wander an exponential; their mixtures both; a random walk a tau longer
    than the history. The fit smooths the noise of single lags, which a maximum would
    ratchet upward."""
    h = lags.astype(np.float64)
    taus = np.geomspace(0.5, max(4.0, 8.0 * float(h[-1])), 40)
    shapes = 1.0 - np.exp(-h[None, :] / taus[:, None])  # one row per tau
    # least squares of gamma on [1, shape] for every tau at once (closed form)
    s_mean = shapes.mean(axis=1)
    centred = shapes - s_mean[:, None]
    sxx = np.einsum("ij,ij->i", centred, centred)
    g_mean = float(gamma.mean())
    flat = sxx <= 1e-300 * max(1.0, float(np.max(sxx, initial=0.0)))
    sill = np.where(flat, 0.0, (centred @ (gamma - g_mean)) / np.where(flat, 1.0, sxx))
    nugget = g_mean - sill * s_mean
    # on the boundary (a negative term): the better of a nugget alone and a sill alone
    ss = np.einsum("ij,ij->i", shapes, shapes)
    sill_only = np.where(ss > 0, np.maximum(shapes @ gamma, 0.0) / np.where(ss > 0, ss, 1.0), 0.0)
    nugget_only = max(g_mean, 0.0)
    error_nugget = float(np.sum((nugget_only - gamma) ** 2))
    error_sill = np.sum((sill_only[:, None] * shapes - gamma) ** 2, axis=1)
    use_sill = error_sill < error_nugget
    bound = (nugget < 0) | (sill < 0)
    nugget = np.where(bound, np.where(use_sill, 0.0, nugget_only), nugget)
    sill = np.where(bound, np.where(use_sill, sill_only, 0.0), sill)
    error = np.sum((nugget[:, None] + sill[:, None] * shapes - gamma) ** 2, axis=1)
    best = int(np.argmin(error))
    return float(nugget[best]), float(sill[best]), float(taus[best])
