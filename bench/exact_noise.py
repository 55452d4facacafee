"""A reference for bench/leak_detection.py: the detector's own ramp tests, judged with the
noise's true covariance.

vramguard's detector must learn each process's noise from that process's own history. This
reference is told the noise instead: for a family whose noise is Gaussian and stationary
(white, white plus AR(1), mean-reverting wander, and leaks on top of them, at one sample a
minute), the covariance follows from the parameters the trace was drawn with. It runs the
same tests as `LeakDetector` (the window `history_s` after the warm-up, a ramp from each
of `ramp_ages_s` ago and a plain line, at least `min_slope_bytes_per_hour`, `z_alarm`,
`confirm_buckets` in a row, an episode ending after `rearm_buckets` quiet), with the slope's
exact variance `w' C w` and no learning margins, and without steps or despiking (families
that need them have no exact covariance here and get none). Where memory follows a load
column exactly (daily-load: sessions x a fixed size), the load is fitted beside the ramp,
as the detector fits it, and the noise left is the family's AR mixture.

What it measures is the headroom: where it meets a target that the detector misses, the
miss is the cost of learning the noise from a short history, not of the test itself.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from vramguard.scenarios import Scenario
from vramguard.trend import DetectorConfig

MB = 1e6
#: the parameters a trace's noise may be drawn with, for the covariance to be exact here
NOISE_PARAMS = {"white_mb", "phi", "ar_mb", "ar_tau_min", "wander_tau_h", "wander_mb"}
#: parameters that shape the trace but not its noise
OTHER_PARAMS = {"warmup_mb", "warmup_tau_min", "leak_mb_h", "leak_start_h"}
#: the daily load's: memory of sessions x a fixed size, which the load column explains exactly
LOAD_PARAMS = {"session_mb", "cycle_mb"}


def autocovariance(
    params: dict[str, Any], max_lag: int, bucket_s: float, with_load: bool = False
) -> np.ndarray | None:
    """The noise's autocovariance at lags 0..max_lag buckets (bytes squared), or None when
    the family's noise is not white, AR(1) and wander (steps, sawtooth, heavy tails, chunks:
    no exact covariance to give). `with_load`: what is left once the load column is
    fitted, for a family whose memory follows its sessions exactly (daily-load)."""
    known = NOISE_PARAMS | OTHER_PARAMS | (LOAD_PARAMS if with_load else set())
    if not set(params) <= known or "white_mb" not in params:
        return None
    lags = np.arange(max_lag + 1, dtype=np.float64)
    cov = np.zeros(max_lag + 1)
    cov[0] = (params["white_mb"] * MB) ** 2
    if "phi" in params:  # phi per sample, and the samples are one bucket apart
        cov += (params["ar_mb"] * MB) ** 2 * params["phi"] ** lags
    elif "ar_tau_min" in params:  # an AR(1) given by its time constant (two-scale)
        cov += (params["ar_mb"] * MB) ** 2 * np.exp(-lags * bucket_s / (params["ar_tau_min"] * 60))
    if "wander_tau_h" in params:
        tau_buckets = params["wander_tau_h"] * 3600.0 / bucket_s
        cov += (params["wander_mb"] * MB) ** 2 * np.exp(-lags / tau_buckets)
    return cov


def _ramp_weights(column: np.ndarray, load: np.ndarray | None) -> np.ndarray:
    """w with w . y the ramp's least-squares coefficient beside a level (and the load, where
    it varies)."""
    if load is None or np.ptp(load) == 0:
        centred = column - column.mean()
        return np.asarray(centred / float(centred @ centred))
    q, r = np.linalg.qr(np.column_stack([np.ones(len(column)), load, column]))
    return np.asarray(np.linalg.solve(r, q.T)[-1])


def _best_z(
    y: np.ndarray, cov: np.ndarray, config: DetectorConfig, load: np.ndarray | None = None
) -> float:
    """The largest z of the ramp tests over one window, with the exact slope variance."""
    n = len(y)
    steps = np.arange(n, dtype=np.float64)
    ages = [None] + [a / config.bucket_s for a in config.ramp_ages_s]
    best = -math.inf
    for age in ages:
        origin = 0.0 if age is None else n - 1 - age
        if origin < 0:
            continue
        weights = _ramp_weights(np.maximum(steps - origin, 0.0), load)
        slope = float(weights @ y)
        if slope * 3600.0 / config.bucket_s < config.min_slope_bytes_per_hour:
            continue
        pairs = np.correlate(weights, weights, "full")[n - 1 :]  # sum_i w_i w_(i+k)
        variance = cov[0] * pairs[0] + 2.0 * float(cov[1:n] @ pairs[1:n])
        best = max(best, slope / math.sqrt(variance))
    return best


def exact_alarms(trace: Scenario, config: DetectorConfig) -> list[float] | None:
    """Alarm episode start times of the exact-covariance reference, or None where the trace
    has no exact covariance here (not regular one-bucket sampling, or not such noise)."""
    t, y = trace.t, trace.values
    if len(t) < 2 or not np.allclose(np.diff(t), config.bucket_s):
        return None
    window = int(config.history_s / config.bucket_s)
    cov = autocovariance(trace.params, window, config.bucket_s, trace.load is not None)
    if cov is None:
        return None
    warm = math.ceil(config.warmup_s / config.bucket_s)
    shortest = int(config.min_fit_s / config.bucket_s)
    starts: list[float] = []
    streak = quiet = 0
    in_episode = False
    for end in range(warm + shortest, len(t)):
        held = slice(max(warm, end + 1 - window), end + 1)
        z = _best_z(y[held], cov, config, None if trace.load is None else trace.load[held])
        if z >= config.z_alarm:
            streak += 1
            quiet = 0
            if streak >= config.confirm_buckets and not in_episode:
                in_episode = True
                starts.append(float(t[end]))
        else:
            streak = 0
            quiet += 1
            if quiet >= config.rearm_buckets:
                in_episode = False
    return starts
