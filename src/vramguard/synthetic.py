"""Seeded synthetic memory traces: the families the leak detector is judged on.

Each trace is memory in bytes at one sample a minute (by default) around a 500 MB base:
white noise, slow drift (AR(1)), GC sawtooth, a warm-up ramp, one-off steps, linear leaks
and staircase leaks. The benchmark (`bench/leak_detection.py`) and the tests use the same
generators, so a figure in bench/RESULTS.md can be reproduced from its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

MB = 1e6
HOUR = 3600.0
BASE_BYTES = 500 * MB


@dataclass(frozen=True, slots=True)
class Trace:
    """A series and what is in it: `leak_start_t` is None for a healthy process."""

    name: str
    t: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    leak_start_t: float | None = None


def times(hours: float = 48.0, interval_s: float = 60.0) -> npt.NDArray[np.float64]:
    return np.arange(0.0, hours * HOUR, interval_s)


def white(
    rng: np.random.Generator, t: npt.NDArray[np.float64], sigma: float = 5 * MB
) -> npt.NDArray[np.float64]:
    return rng.normal(0.0, sigma, len(t))


def ar1(
    rng: np.random.Generator, t: npt.NDArray[np.float64], sigma: float = 5 * MB, phi: float = 0.9
) -> npt.NDArray[np.float64]:
    """AR(1) drift whose marginal standard deviation is `sigma`."""
    innovations = rng.normal(0.0, sigma * np.sqrt(1 - phi * phi), len(t))
    out = np.empty(len(t))
    level = rng.normal(0.0, sigma)
    for i, shock in enumerate(innovations):
        level = phi * level + shock
        out[i] = level
    return out


def sawtooth(
    rng: np.random.Generator, t: npt.NDArray[np.float64], amplitude: float = 32 * MB,
    period_s: float = 40 * 60.0,
) -> npt.NDArray[np.float64]:  # fmt: skip
    """Memory that climbs `amplitude` over each period and drops back (a GC or cache flush)."""
    phase = rng.uniform(0.0, period_s)
    return amplitude * (((t + phase) % period_s) / period_s)


def warmup(
    t: npt.NDArray[np.float64], rise: float = 150 * MB, tau_s: float = 600.0
) -> npt.NDArray[np.float64]:
    """Pools and caches filling at start: `rise` bytes, saturating with time constant tau."""
    return rise * (1.0 - np.exp(-t / tau_s))


def step(t: npt.NDArray[np.float64], at_s: float, size: float) -> npt.NDArray[np.float64]:
    return np.where(t >= at_s, size, 0.0)


def linear_leak(
    t: npt.NDArray[np.float64], start_s: float, rate_per_hour: float
) -> npt.NDArray[np.float64]:
    return np.maximum(t - start_s, 0.0) / HOUR * rate_per_hour


def staircase(
    t: npt.NDArray[np.float64], start_s: float, size: float = 64 * MB, every_s: float = 4 * HOUR
) -> npt.NDArray[np.float64]:
    """A fixed amount kept every `every_s`, the first at `start_s`."""
    return np.where(t >= start_s, (np.floor((t - start_s) / every_s) + 1) * size, 0.0)


def family(name: str, seed: int, hours: float = 48.0, interval_s: float = 60.0) -> Trace:
    """One seeded trace of a named family (see FAMILIES)."""
    rng = np.random.default_rng(seed)
    t = times(hours, interval_s)
    noise_kind, _, shape = name.partition("+")
    noise = ar1(rng, t) if noise_kind == "drift" else white(rng, t)
    base = BASE_BYTES + noise
    late = float(rng.uniform(4 * HOUR, max(4 * HOUR, hours * HOUR - 20 * HOUR)))
    if shape == "":
        return Trace(name, t, base)
    if shape == "sawtooth":
        return Trace(name, t, base + sawtooth(rng, t))
    if shape == "warmup":
        return Trace(name, t, base + warmup(t))
    if shape.startswith("step"):
        return Trace(name, t, base + step(t, late, float(shape[4:]) * MB))
    if shape.startswith("leak"):
        return Trace(name, t, base + linear_leak(t, late, float(shape[4:]) * MB), late)
    if shape == "staircase":
        start = float(rng.uniform(4 * HOUR, 12 * HOUR))
        return Trace(name, t, base + staircase(t, start), start)
    raise ValueError(f"unknown trace family {name!r}; known: {', '.join(FAMILIES)}")


#: healthy families (no leak) and leaking ones, as `family()` names them
HEALTHY = (
    "white", "drift", "white+sawtooth", "drift+sawtooth", "white+warmup",
    "white+step64", "white+step128", "drift+step64", "drift+step128",
)  # fmt: skip
LEAKING = (
    "white+leak5", "white+leak10", "white+leak20", "drift+leak5", "drift+leak10",
    "drift+leak20", "white+staircase",
)  # fmt: skip
FAMILIES = HEALTHY + LEAKING
