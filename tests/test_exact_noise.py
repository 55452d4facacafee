"""bench/exact_noise.py, the reference that is told the noise: its covariance must be the one
the benchmark's traces are drawn with, or its figures bound nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from vramguard.scenarios import Scenario, draw
from vramguard.trend import DetectorConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import exact_noise  # bench/ is not a package

MB = 1e6


def _empirical(values: np.ndarray, lags: list[int]) -> np.ndarray:
    x = values - values.mean()
    return np.array([float(x[k:] @ x[: len(x) - k]) / (len(x) - k) for k in lags])


def test_the_covariance_is_the_one_the_traces_are_drawn_with() -> None:
    """Long healthy traces (several seeds, warm-up left out): the empirical autocovariance
    at lags 0-120 matches the exact one within sampling error (as a share of the variance:
    an AR(1)'s covariance 120 lags out is nearly nothing)."""
    lags = [0, 1, 5, 30, 120]
    for family in ("white+ar", "wander"):
        errors = []
        for seed in range(6):
            trace = draw(family, seed, hours=400.0)
            cov = exact_noise.autocovariance(trace.params, 120, 60.0)
            assert cov is not None
            settled = trace.values[trace.t >= 3600.0]
            errors.append((_empirical(settled, lags) - cov[lags]) / cov[0])
        worst = np.max(np.abs(np.mean(errors, axis=0)))
        # a wander of up to 6 h over 400 h: its sample variance is a few percent off
        assert worst < 0.1, (family, np.mean(errors, axis=0))


def test_no_exact_covariance_for_noise_it_does_not_model() -> None:
    for family in ("pool-steps", "sawtooth", "heavy-tail", "daily-load", "one-step"):
        assert exact_noise.autocovariance(draw(family, 0).params, 10, 60.0) is None
    gaps = draw("gaps", 0)  # jittered, gapped sampling
    assert exact_noise.exact_alarms(gaps, DetectorConfig()) is None


def test_it_finds_a_leak_on_white_noise_and_keeps_quiet_on_the_same_noise() -> None:
    rng = np.random.default_rng(5)
    t = np.arange(0.0, 12 * 3600.0, 60.0)
    noise = rng.normal(500 * MB, 3 * MB, len(t))
    params = {"white_mb": 3.0}
    quiet = Scenario("white", 0, t, noise, None, None, params)
    assert exact_noise.exact_alarms(quiet, DetectorConfig()) == []
    start = 6 * 3600.0
    leak = noise + np.maximum(t - start, 0.0) / 3600.0 * 10 * MB
    leaking = Scenario("white+leak10", 0, t, leak, None, start, {**params, "leak_mb_h": 10.0})
    alarms = exact_noise.exact_alarms(leaking, DetectorConfig())
    assert alarms and start < alarms[0] < start + 2 * 3600.0


def test_with_the_load_column_it_fits_the_load_as_the_detector_does() -> None:
    """daily-load's memory is its sessions times a fixed size plus an AR mixture: with the
    load fitted beside the ramp, the noise left is that mixture's, so the reference judges
    the 20 MB/h target on the daily cycle too. Without the column it has no covariance to
    give: the cycle is not noise."""
    config = DetectorConfig()
    healthy = draw("daily-load", 0)
    assert exact_noise.autocovariance(healthy.params, 10, 60.0) is None  # not without load
    assert exact_noise.autocovariance(healthy.params, 10, 60.0, with_load=True) is not None
    assert exact_noise.exact_alarms(healthy, config) == []
    unloaded = Scenario("daily-load", 0, healthy.t, healthy.values, None, None, healthy.params)
    assert exact_noise.exact_alarms(unloaded, config) is None
    leaking = draw("load+leak20", 0)
    alarms = exact_noise.exact_alarms(leaking, config)
    assert leaking.leak_start_t is not None and alarms
    assert leaking.leak_start_t < alarms[0] < leaking.leak_start_t + 2 * 3600.0
