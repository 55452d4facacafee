"""bench/bayes_reference.py, the reference told the noise's model and a prior over its
parameters: its Kalman filter must give the Bayes factor that dense linear algebra gives,
and it must tell a leak from none where the answer is plain."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bayes_reference as bayes  # bench/ is not a package

MB = 1e6
HOUR = 3600.0
SMALL = bayes.Prior("small", (1.0, 4.0, 2), (2.0, 8.0, 2), (10.0, 120.0, 2))


def dense_log_bayes_factor(t: np.ndarray, y_mb: np.ndarray, onsets: np.ndarray) -> float:
    """The same Bayes factor from each grid point's full covariance: the level integrated
    with a flat prior, onsets and rates averaged."""
    white, wander, tau, log_prior = SMALL.grid()
    ones = np.ones(len(t))
    null, leak = [], []
    for w, a, s, lp in zip(white, wander, tau, log_prior, strict=True):
        cov = a * a * np.exp(-np.abs(t[:, None] - t[None, :]) / s) + w * w * np.eye(len(t))
        inv = np.linalg.inv(cov)
        logdet = np.linalg.slogdet(cov)[1]
        one = ones @ inv @ ones

        def quad(z: np.ndarray, one: float = one, inv: np.ndarray = inv) -> float:
            return float(z @ inv @ z - (ones @ inv @ z) ** 2 / one)

        null.append(lp - 0.5 * (logdet + quad(y_mb) + math.log(one)))
        terms = [
            -0.5 * (quad(y_mb - r * np.maximum(t - o, 0.0) / HOUR) - quad(y_mb))
            for o in onsets for r in bayes.RATES_MB_H
        ]  # fmt: skip
        leak.append(bayes.logsumexp(np.array(terms)) - math.log(len(terms)))
    posterior = np.array(null) - bayes.logsumexp(np.array(null))
    return float(bayes.logsumexp(posterior + np.array(leak)))


def test_the_filter_gives_the_dense_bayes_factor() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(0.0, 2.5 * HOUR, 120.0)
    values = (rng.normal(0, 3, len(t)) + np.maximum(t - 1.6 * HOUR, 0) / HOUR * 12) * MB
    looks = bayes.log_bayes_factors(t, values, SMALL, look_every_s=600.0)
    when, value = looks[-1]
    kept = t >= HOUR
    onsets = np.arange(HOUR, t[-1], 1800.0)
    onsets = onsets[onsets <= when - 1800.0]
    upto = kept & (t <= when)
    dense = dense_log_bayes_factor(t[upto], values[upto] / MB, onsets)
    assert value == pytest.approx(dense, rel=1e-6, abs=1e-6)


def test_a_plain_leak_is_told_from_none() -> None:
    rng = np.random.default_rng(5)
    t = np.arange(0.0, 10 * HOUR, 60.0)
    noise = rng.normal(0, 3, len(t)) * MB
    prior = bayes.PRIORS["family"]
    healthy = bayes.log_bayes_factors(t, noise, prior, look_every_s=1800.0)
    leaking = bayes.log_bayes_factors(
        t, noise + np.maximum(t - 5 * HOUR, 0) / HOUR * 20 * MB, prior, look_every_s=1800.0
    )
    assert max(v for _, v in healthy) < 2.0
    assert leaking[-1][1] > 20.0
    assert bayes.first_above(leaking, 8.0, 5 * HOUR) is not None


def test_the_ratio_prior_keeps_only_its_shapes_and_sums_to_one() -> None:
    white, wander, _, log_weight = bayes.PRIORS["ratio"].grid()
    everything = bayes.PRIORS["scale-free"].grid()[0]
    assert math.isclose(float(np.exp(log_weight).sum()), 1.0)
    assert np.all((wander / white >= 0.25) & (wander / white <= 10))
    assert 0 < len(white) < len(everything)
