"""The detector's shortcuts change no decision: the ramps' design kept while the columns
repeat, the white-noise bound on the AR(1) screen, and `last_fit` made only when read give
what the plain computation gives, bit for bit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from vramguard.trend import LeakDetector, _Design, _Fits, _ramps

MB = 1e6
HOUR = 3600.0


def replay(times: npt.NDArray[np.float64], values: npt.NDArray[np.float64]) -> list[Any]:
    """Everything the detector decided, and its line at every hundredth sample."""
    detector = LeakDetector()
    lines = []
    for start in range(0, len(times), 100):
        detector.update_many(times[start : start + 100], values[start : start + 100])
        fit = detector.last_fit
        lines.append(None if fit is None else (fit.slope_per_s, fit.stderr_per_s, fit.rho))
    detector.flush()
    alarms = [(a.t, a.kind, a.z, a.slope_bytes_per_hour) for a in detector.alarms]
    steps = [(s.t, s.size_bytes, s.level_before) for s in detector.steps]
    return [alarms, steps, detector.restarts, lines]


def fresh_design(
    self: LeakDetector,
    t: npt.NDArray[np.float64],
    t_now: float,
    origins: list[float],
    nuisance: Sequence[npt.NDArray[np.float64]],
) -> _Design:
    return _Design(_ramps(t, origins), nuisance)


@pytest.mark.parametrize("times", ["whole seconds", "jittered"])
def test_the_kept_design_decides_as_a_fresh_one_each_bucket(
    times: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(4)
    t = np.arange(0.0, 20 * HOUR, 60.0)
    t = t[(t < 11 * HOUR) | (t > 11.2 * HOUR)]  # a gap: windows across it are not regular
    if times == "jittered":
        t = t + rng.uniform(0.0, 30.0, len(t))
    values = 3e9 + rng.normal(0, 2 * MB, len(t)) + np.cumsum(rng.normal(0, 0.1 * MB, len(t)))
    values[t > 9 * HOUR] += 60 * MB  # a step: a nuisance term for 8 h
    values += np.where(t > 14 * HOUR, (t - 14 * HOUR) / HOUR * 15 * MB, 0.0)  # a leak
    kept = replay(t, values)
    monkeypatch.setattr(LeakDetector, "_design_for", fresh_design)
    assert kept == replay(t, values)
    assert kept[0] and kept[1]  # it alarmed and found the step: the decisions were tested


def test_the_white_noise_bound_never_drops_a_ramp_the_ar1_screen_passes() -> None:
    rng = np.random.default_rng(9)
    t = np.arange(481, dtype=np.float64) * 60.0
    origins = [0.0] + [t[-1] - a * HOUR for a in (0.75, 1, 1.5, 2, 3, 4, 6)]
    columns = _ramps(t, origins)
    pruned = 0
    for trial in range(300):
        phi = rng.uniform(0.0, 0.97)
        noise = np.zeros(len(t))
        for i in range(1, len(t)):
            noise[i] = phi * noise[i - 1] + rng.normal()
        y = noise + rng.uniform(0, 0.02) * np.maximum(t - origins[trial % 8], 0.0) / 60
        fits = _Fits(y, columns, ())
        for z_needed in (0.5, 2.0, 4.5, 8.0):
            if not fits.may_reach(z_needed):
                pruned += 1
                assert max(fits.z_model) < z_needed
    assert pruned > 300  # the bound does spare the AR(1) figures
