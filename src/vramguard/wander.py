"""Does a ramp explain a series better than a noise that wanders?

A slope alarm's error bars are learned from the process's own history (`vramguard.trend`:
the largest of AR(1), batch means and the variogram from before the ramp). While that
history is short, or has by chance seen little of a slow wander, they are too narrow and a
wander's climb reads as a leak. This module is the alarm's second opinion, a likelihood
ratio with the noise fitted, not assumed: the series (averaged into a few hundred means) is
fitted by maximum likelihood twice, without the ramp and with it, each time with a noise
of white plus one mean-reverting (Ornstein-Uhlenbeck) part whose time constant, share and
size are free. A wander's climb is explained nearly as well by a larger or slower wander;
a leak's straight climb beside a flatter history is not.

The Gaussian likelihood is profiled over a grid: the time constant from half a mean's
width to `tau_max_s` (a wander slower than the series is a random walk), the white part's
share from 1/1000 to 1000 times the wandering part's and pure white noise, the scale in
closed form. For an OU process the inverse covariance is tridiagonal at any sampling times
(it is Markov), so every grid point costs O(n): `(R + lam I)^-1 = (I + lam T)^-1 T` where
`T = R^-1`, solved for the whole grid at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

#: the white part's variance over the wandering part's: the grid of the profile
WHITE_RATIOS: Array = np.geomspace(1e-3, 1e3, 25)
TAU_POINTS = 12  # time constants tried, evenly on a log scale


def _ou_precision(t: Array, taus_s: Array) -> tuple[Array, Array, Array]:
    """For a unit-variance OU process seen at times `t`, one row per time constant: the
    diagonal and off-diagonal of its tridiagonal inverse covariance, and log det of the
    covariance."""
    phi = np.exp(-np.diff(t)[None, :] / taus_s[:, None])
    innovation = np.concatenate([np.ones((len(taus_s), 1)), 1.0 - phi * phi], axis=1)
    inverse = 1.0 / innovation
    diagonal = inverse.copy()
    diagonal[:, :-1] += phi * phi * inverse[:, 1:]
    return diagonal, -phi * inverse[:, 1:], np.log(innovation).sum(axis=1)


def _tridiagonal_solve(diagonal: Array, off: Array, rhs: Array) -> tuple[Array, Array]:
    """Solve the symmetric positive definite tridiagonal systems (one per row of `diagonal`)
    for their right-hand sides `rhs` (rows x n x columns; eliminated in place, so pass one
    the caller does not keep); also the log determinants."""
    n = diagonal.shape[1]
    pivots = np.empty_like(diagonal)
    forward = rhs
    pivots[:, 0] = diagonal[:, 0]
    for i in range(1, n):
        factor = off[:, i - 1] / pivots[:, i - 1]
        pivots[:, i] = diagonal[:, i] - factor * off[:, i - 1]
        forward[:, i] -= factor[:, None] * forward[:, i - 1]
    out = np.empty_like(forward)
    out[:, n - 1] = forward[:, n - 1] / pivots[:, n - 1, None]
    for i in range(n - 2, -1, -1):
        out[:, i] = (forward[:, i] - off[:, i, None] * out[:, i + 1]) / pivots[:, i, None]
    return out, np.log(pivots).sum(axis=1)


def profile_m2ll(
    t: Array, y: Array, design: Array, subsets: Sequence[Sequence[int]], taus_s: Array
) -> list[float]:
    """-2 log-likelihood at its maximum over the noise grid (white plus OU, each time
    constant in `taus_s`; and white alone), for the regression of `y` on each subset of the
    columns of `design` (indices), all from one solve. Each subset's columns must be
    linearly independent."""
    n = len(y)
    data = np.column_stack([design, y])
    width = data.shape[1]
    diagonal, off, logdet_r = _ou_precision(t, taus_s)
    t_data = diagonal[:, :, None] * data[None]  # T [X y], one per time constant
    t_data[:, :-1] += off[:, :, None] * data[None, 1:]
    t_data[:, 1:] += off[:, :, None] * data[None, :-1]
    grid = len(taus_s) * len(WHITE_RATIOS)
    lam = WHITE_RATIOS[None, :, None]
    solved, logdet_a = _tridiagonal_solve(
        (1.0 + lam * diagonal[:, None, :]).reshape(grid, n),
        (lam * off[:, None, :]).reshape(grid, n - 1),
        np.repeat(t_data, len(WHITE_RATIOS), axis=0),  # a fresh array: solved in place
    )
    logdet = np.repeat(logdet_r, len(WHITE_RATIOS)) + logdet_a
    gram = np.einsum("ni,knj->kij", data, solved)  # [X y]' (R + lam I)^-1 [X y]
    out: list[float] = []
    for subset in subsets:
        cols = list(subset)
        xty = gram[:, cols, width - 1]
        beta = np.linalg.solve(gram[:, cols][:, :, cols], xty[:, :, None])[:, :, 0]
        quad = gram[:, width - 1, width - 1] - np.einsum("ki,ki->k", xty, beta)
        fitted = quad > 0
        m2ll = np.where(fitted, n * np.log(np.where(fitted, quad, 1.0) / n) + logdet, np.inf)
        x = design[:, cols]
        residual = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
        white = n * math.log(max(float(residual @ residual), 1e-300) / n)
        out.append(min(white, float(m2ll.min())))
    return out


def likelihood_ratios(
    t: Array,
    y: Array,
    nuisance: Sequence[Array],
    alternatives: Sequence[Array],
    mean_width_s: float,
    tau_max_s: float,
) -> list[float]:
    """For each alternative column (a ramp, a level shift), twice the log-likelihood it adds
    to a fit of level and `nuisance` columns, with a noise of white plus OU fitted each time
    (`ramp_likelihood_ratio`); all from one solve, so alternatives compare with each other
    too. inf for one that cannot be told from the other columns, or with too few means."""
    key = np.floor((t - t[0]) / mean_width_s).astype(np.int64)
    _, which, counts = np.unique(key, return_inverse=True, return_counts=True)

    def means(column: Array) -> Array:
        return np.asarray(np.bincount(which, column) / counts, dtype=np.float64)

    tm, ym = means(t), means(y)
    scale = float(np.std(ym))
    columns = [np.ones(len(tm))]
    for column in (means(c) for c in nuisance):
        if np.ptp(column) > 0:
            columns.append(column)
    base = len(columns)
    design = np.column_stack([*columns, *(means(a) for a in alternatives)])
    if scale <= 0 or len(tm) < base + 9:
        return [math.inf] * len(alternatives)
    fits = [
        i for i in range(base, design.shape[1])
        if np.linalg.matrix_rank(design[:, [*range(base), i]]) == base + 1
    ]  # fmt: skip
    if not fits:  # also where the level and nuisance alone are rank-deficient
        return [math.inf] * len(alternatives)
    taus = np.geomspace(mean_width_s / 2, max(tau_max_s, mean_width_s), TAU_POINTS)
    subsets = [list(range(base))] + [[*range(base), i] for i in fits]
    without, *each = profile_m2ll(tm, (ym - ym.mean()) / scale, design, subsets, taus)
    ratios = dict(zip(fits, each, strict=True))
    return [without - ratios[base + k] if base + k in ratios else math.inf
            for k in range(len(alternatives))]  # fmt: skip


def ramp_likelihood_ratio(
    t: Array,
    y: Array,
    nuisance: Sequence[Array],
    ramp: Array,
    mean_width_s: float,
    tau_max_s: float,
) -> float:
    """Twice the log-likelihood a ramp adds to a fit of level, `nuisance` columns and a
    noise of white plus OU (every noise parameter fitted, with and without the ramp), on
    means of `mean_width_s` of the series. Large for a climb no wander of the series
    explains; inf when the ramp cannot be told from the other columns or there are too few
    means to fit."""
    return likelihood_ratios(t, y, nuisance, [ramp], mean_width_s, tau_max_s)[0]
