"""Randomized memory-trace families for judging the leak detector on noise it was not tuned on.

`synthetic.family()` draws fixed shapes (white N(0, 5 MB), AR(1) phi 0.9, ...): the ones
the detector was first built against. Here every family draws its parameters from wide
ranges, seeded, so a benchmark over many seeds samples the space rather than one point of
it: white noise of 1-8 MB, white plus AR(1) of 2-10 MB with phi 0.8-0.99, mean-reverting
wander with time constants of 1-6 h, daily load cycles of 30-150 MB (with or without the
load column), Student-t noise with rare spikes, pools that grow and shrink in steps, gaps
and jittered intervals, GC sawtooth of random period and amplitude, restarts, a fast AR
and a slow wander together, memory taken in chunks of 2-8 MB, a load cycle of 1-6 h that is
not daily, and a GPU process's memory as a driver reports it (flat, moving
between a few levels in 2 MiB pages, whole MiB); and leaks of 5-40 MB/h, per-session leaks,
staircases and leaks under sawtooth, cycles and GPU levels on top of those.

Every trace starts with a warm-up (0-150 MB, time constant 2-10 min). `draw(name, seed)`
gives one; `params` says what was drawn, so a failure can be read and replayed.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

MB = 1e6
MIB = float(2**20)
PAGE_BYTES = 2 * MIB  # the page GPU memory is allocated in
HOUR = 3600.0
BASE_BYTES = 500 * MB

Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A trace and what is in it. `load` is the load column (sessions) when the family
    carries one; `leak_start_t` is None for a healthy process."""

    family: str
    seed: int
    t: Array
    values: Array
    load: Array | None = None
    leak_start_t: float | None = None
    params: dict[str, Any] = field(default_factory=dict)


class _Draw:
    """A seeded generator that records every parameter it draws."""

    def __init__(self, seed: int, family: str) -> None:
        # the family's name is part of the seed: seed 3 of two families are independent
        self.rng = np.random.default_rng([seed, zlib.crc32(family.encode())])
        self.params: dict[str, Any] = {}

    def uniform(self, name: str, low: float, high: float) -> float:
        value = float(self.rng.uniform(low, high))
        self.params[name] = round(value, 4)
        return value

    def log_uniform(self, name: str, low: float, high: float) -> float:
        value = float(np.exp(self.rng.uniform(np.log(low), np.log(high))))
        self.params[name] = round(value, 4)
        return value


def _times(d: _Draw, hours: float, interval_s: float, jitter: bool = False) -> Array:
    if not jitter:
        return np.arange(0.0, hours * HOUR, interval_s)
    steps = interval_s * d.rng.uniform(0.5, 1.5, int(hours * HOUR / interval_s) + 1)
    t = np.asarray(np.cumsum(steps) - steps[0], dtype=np.float64)
    return t[t < hours * HOUR]


def _ar1(rng: np.random.Generator, t: Array, sigma: float, tau_s: float) -> Array:
    """A mean-reverting (Ornstein-Uhlenbeck) series with marginal sigma and time constant
    tau, exact at any sampling times (irregular ones too)."""
    dt = np.diff(t, prepend=t[0])
    phi = np.exp(-dt / tau_s)
    shocks = rng.normal(0.0, 1.0, len(t)) * sigma * np.sqrt(1.0 - phi * phi)
    out = np.empty(len(t))
    level = float(rng.normal(0.0, sigma))
    for i in range(len(t)):
        level = phi[i] * level + shocks[i]
        out[i] = level
    return out


def _white(d: _Draw, t: Array, low: float = 1.0, high: float = 8.0) -> Array:
    return d.rng.normal(0.0, d.uniform("white_mb", low, high) * MB, len(t))


def _ar_mix(d: _Draw, t: Array, interval_s: float, phi_high: float = 0.99) -> Array:
    """White noise of 1-8 MB plus AR(1) of 2-10 MB with phi 0.8-phi_high per sample."""
    phi = d.uniform("phi", 0.8, phi_high)
    sigma = d.uniform("ar_mb", 2.0, 10.0) * MB
    return _white(d, t) + _ar1(d.rng, t, sigma, -interval_s / np.log(phi))


def _warmup(d: _Draw, t: Array) -> Array:
    rise = d.uniform("warmup_mb", 0.0, 150.0) * MB
    tau = d.uniform("warmup_tau_min", 2.0, 10.0) * 60.0
    return np.asarray(rise * (1.0 - np.exp(-(t - t[0]) / tau)), dtype=np.float64)


def _sawtooth(d: _Draw, t: Array) -> Array:
    period = d.log_uniform("saw_period_min", 5.0, 120.0) * 60.0
    amplitude = d.uniform("saw_mb", 5.0, 60.0) * MB
    phase = d.rng.uniform(0.0, period)
    return amplitude * (((t + phase) % period) / period)


def _wander(d: _Draw, t: Array) -> Array:
    tau = d.uniform("wander_tau_h", 1.0, 6.0) * HOUR
    return _ar1(d.rng, t, d.uniform("wander_mb", 2.0, 10.0) * MB, tau) + _white(d, t)


def _heavy_tail(d: _Draw, t: Array) -> Array:
    df = d.uniform("t_df", 2.0, 5.0)
    scale = d.uniform("t_scale_mb", 1.0, 5.0) * MB
    noise = d.rng.standard_t(df, len(t)) * scale
    spikes = d.rng.random(len(t)) < d.log_uniform("spike_rate", 3e-4, 3e-3)
    size = d.rng.uniform(20.0, 200.0, len(t)) * MB * d.rng.choice([-1.0, 1.0], len(t))
    return noise + np.where(spikes, size, 0.0)


def _pool_steps(d: _Draw, t: Array) -> Array:
    """A pool that grows and shrinks by steps of 8-64 MB at random times (every 1-4 h on
    average), between empty and four steps."""
    size = d.uniform("pool_step_mb", 8.0, 64.0) * MB
    every = d.uniform("pool_every_h", 1.0, 4.0) * HOUR
    level, out, now = 0, np.zeros(len(t)), float(t[0])
    moves: list[list[float]] = []  # [hour, level after], recorded so a reader can judge
    d.params["pool_moves"] = moves
    while True:
        now += float(d.rng.exponential(every))
        if now >= t[-1]:
            return out
        move = int(d.rng.choice([-1, 1]))
        level = min(max(level + move, 0), 4)
        out[t >= now] = level * size
        moves.append([round(now / HOUR, 3), level])


def _gpu_levels(d: _Draw, t: Array) -> Array:
    """A GPU process's memory as a driver reports it: flat, moving now and then between two
    to five levels (buffers of 2-20 MiB allocated and freed whole, in 2 MiB pages) that it
    holds for 5 min to 2 h on average; no other noise."""
    sizes = np.round(d.rng.uniform(1.0, 10.0, int(d.rng.integers(2, 6)))) * PAGE_BYTES
    sizes[0] = 0.0
    dwell = d.log_uniform("dwell_min", 5.0, 120.0) * 60.0
    out, now = np.zeros(len(t)), float(t[0])
    while True:
        now += float(d.rng.exponential(dwell))
        if now >= t[-1]:
            d.params["levels_mib"] = [int(s // MIB) for s in sizes]
            return out
        out[t >= now] = sizes[int(d.rng.integers(0, len(sizes)))]


def _cycle(d: _Draw, t: Array) -> Array:
    """A load cycle of its own (a batch job, a cron, a playlist) that is not daily: a sine or
    a triangle of 10-60 MB with a period of 1-6 h, over white noise of 1-5 MB."""
    period = d.log_uniform("cycle_period_h", 1.0, 6.0) * HOUR
    swing = d.uniform("cycle_mb", 10.0, 60.0) * MB
    phase = d.rng.uniform(0.0, 1.0)
    turn = (t / period + phase) % 1.0
    if d.rng.random() < 0.5:
        shape = np.sin(2 * np.pi * turn)
        d.params["cycle_shape"] = "sine"
    else:
        shape = 4.0 * np.abs(turn - 0.5) - 1.0
        d.params["cycle_shape"] = "triangle"
    return swing / 2 * shape + _white(d, t, 1.0, 5.0)


def _daily_load(d: _Draw, t: Array) -> tuple[Array, Array]:
    """Sessions that follow a daily cycle (noisy, whole numbers), and the memory they hold:
    a swing of 30-150 MB between night and day at 1-8 MB a session."""
    per_session = d.uniform("session_mb", 1.0, 8.0) * MB
    swing = d.uniform("cycle_mb", 30.0, 150.0) * MB
    phase = d.rng.uniform(0.0, 2 * np.pi)
    mean_sessions = swing / per_session / 2 + d.rng.uniform(2.0, 10.0)
    cycle = mean_sessions + swing / per_session / 2 * np.sin(2 * np.pi * t / (24 * HOUR) + phase)
    sessions = np.maximum(np.round(cycle + d.rng.normal(0.0, 1.0, len(t))), 0.0)
    return sessions, sessions * per_session


def _gaps(d: _Draw, t: Array, values: Array) -> tuple[Array, Array]:
    """One to four gaps of 10-120 minutes with no samples."""
    keep = np.ones(len(t), dtype=bool)
    for _ in range(int(d.rng.integers(1, 5))):
        start = d.rng.uniform(t[0] + HOUR, t[-1] - 2 * HOUR)
        keep &= ~((t >= start) & (t < start + d.rng.uniform(10.0, 120.0) * 60.0))
    return t[keep], values[keep]


def _noise(d: _Draw, kind: str, t: Array, interval_s: float) -> Array:
    if kind == "white":
        return _white(d, t)
    if kind == "mix":
        return _ar_mix(d, t, interval_s)
    if kind == "mix95":  # the mixtures the detection targets are stated for
        return _ar_mix(d, t, interval_s, phi_high=0.95)
    if kind == "wander":
        return _wander(d, t)
    if kind == "heavy":
        return _heavy_tail(d, t)
    if kind == "sawtooth":
        return _sawtooth(d, t) + _white(d, t)
    if kind == "pool":
        return _pool_steps(d, t) + _ar_mix(d, t, interval_s)
    if kind == "two-scale":  # a fast AR(1) and a slow wander, over white
        fast = d.uniform("ar_tau_min", 5.0, 30.0) * 60.0
        slow = d.uniform("wander_tau_h", 2.0, 12.0) * HOUR
        return (
            _white(d, t, 1.0, 5.0)
            + _ar1(d.rng, t, d.uniform("ar_mb", 2.0, 8.0) * MB, fast)
            + _ar1(d.rng, t, d.uniform("wander_mb", 2.0, 8.0) * MB, slow)
        )
    if kind == "quantized":  # an allocator that takes memory in chunks of 2-8 MB
        quantum = d.uniform("quantum_mb", 2.0, 8.0) * MB
        return np.round(_ar_mix(d, t, interval_s, phi_high=0.95) / quantum) * quantum
    if kind == "gpu-levels":
        d.params["whole_mib"] = True
        return _gpu_levels(d, t)
    if kind == "cycle":
        return _cycle(d, t)
    raise ValueError(f"unknown noise {kind!r}")


def _leak_start(d: _Draw, hours: float) -> float:
    return d.uniform("leak_start_h", 4.0, max(4.0, min(20.0, hours - 12.0))) * HOUR


def _linear(t: Array, start: float, rate: float) -> Array:
    return np.maximum(t - start, 0.0) / HOUR * rate


Builder = Callable[[_Draw, float, float], tuple[Array, Array, Array | None, float | None]]


def _healthy(kind: str) -> Builder:
    def build(d: _Draw, hours: float, interval: float) -> Any:
        t = _times(d, hours, interval)
        return t, _noise(d, kind, t, interval), None, None

    return build


def _leaking(kind: str, low: float, high: float | None = None, from_start: bool = False) -> Builder:
    """A linear leak of `low` MB/h (or drawn from low-high) from a random hour, on `kind`;
    or from the process's first sample (`from_start`: no clean history to learn from)."""

    def build(d: _Draw, hours: float, interval: float) -> Any:
        t = _times(d, hours, interval)
        rate = (low if high is None else d.uniform("leak_mb_h", low, high)) * MB
        d.params.setdefault("leak_mb_h", low)
        start = float(t[0]) if from_start else _leak_start(d, hours)
        return t, _noise(d, kind, t, interval) + _linear(t, start, rate), None, start

    return build


def _build_levels_leak(d: _Draw, hours: float, interval: float) -> Any:
    """5-40 MB/h on a GPU process's levels, as a driver sees it: 2 MiB pages allocated and
    never freed."""
    t = _times(d, hours, interval)
    rate = d.uniform("leak_mb_h", 5.0, 40.0) * MB
    start = _leak_start(d, hours)
    pages = np.floor(_linear(t, start, rate) / PAGE_BYTES) * PAGE_BYTES
    return t, _noise(d, "gpu-levels", t, interval) + pages, None, start


def _build_step(d: _Draw, hours: float, interval: float) -> Any:
    t = _times(d, hours, interval)
    at = d.uniform("step_at_h", 2.0, hours - 2.0) * HOUR
    size = d.uniform("step_mb", 16.0, 128.0) * MB
    return t, _ar_mix(d, t, interval) + np.where(t >= at, size, 0.0), None, None


def _build_gaps(d: _Draw, hours: float, interval: float) -> Any:
    t = _times(d, hours, interval, jitter=True)
    t, v = _gaps(d, t, _ar_mix(d, t, interval))
    return t, v, None, None


def _build_restart(d: _Draw, hours: float, interval: float) -> Any:
    """A healthy process restarted once or twice: memory falls back to its start level and
    warms up again (the warm-up is this builder's own)."""
    t = _times(d, hours, interval)
    starts = [float(t[0]), *sorted(d.rng.uniform(3 * HOUR, t[-1] - 3 * HOUR, d.rng.integers(1, 3)))]
    d.params["restarts_h"] = [round(float(s) / HOUR, 2) for s in starts[1:]]
    rise = d.uniform("warmup_mb", 20.0, 150.0) * MB
    tau = d.uniform("warmup_tau_min", 2.0, 10.0) * 60.0
    since = t - np.array(starts)[np.searchsorted(starts, t, side="right") - 1]
    d.params["own_warmup"] = True
    return t, _ar_mix(d, t, interval) + rise * (1.0 - np.exp(-since / tau)), None, None


def _build_load(with_column: bool, leak_mb_h: float = 0.0) -> Builder:
    def build(d: _Draw, hours: float, interval: float) -> Any:
        t = _times(d, hours, interval)
        sessions, held = _daily_load(d, t)
        v = held + _ar_mix(d, t, interval, phi_high=0.95)
        start = None
        if leak_mb_h:
            start = _leak_start(d, hours)
            v = v + _linear(t, start, leak_mb_h * MB)
        return t, v, sessions if with_column else None, start

    return build


def _build_session_leak(d: _Draw, hours: float, interval: float) -> Any:
    """Each session's memory grows (a cache per session that is never trimmed): total
    growth is sessions x rate, so it follows the load and climbs with it."""
    t = _times(d, hours, interval)
    sessions, held = _daily_load(d, t)
    rate = d.uniform("session_leak_mb_h", 0.3, 2.0) * MB
    start = _leak_start(d, hours)
    grown = sessions * _linear(t, start, rate)
    return t, held + grown + _ar_mix(d, t, interval, phi_high=0.95), sessions, start


def _build_staircase(d: _Draw, hours: float, interval: float) -> Any:
    """32 MB kept every 3 h from a random hour."""
    t = _times(d, hours, interval)
    start = _leak_start(d, hours)
    d.params["stair_mb"], d.params["stair_every_h"] = 32, 3
    stairs = _stairs(t, start, 32 * MB, 3 * HOUR)
    return t, _ar_mix(d, t, interval, phi_high=0.95) + stairs, None, start


def _build_random_staircase(d: _Draw, hours: float, interval: float) -> Any:
    t = _times(d, hours, interval)
    start = _leak_start(d, hours)
    stairs = _random_stairs(d, t, start)
    return t, _noise(d, "white", t, interval) + stairs, None, start


def _build_pool_staircase(d: _Draw, hours: float, interval: float) -> Any:
    """A staircase of 16-64 MB every 1-4 h from a random hour, on a pool that grows and
    shrinks by steps of its own (pool-steps): the pool's moves widen the spread of levels
    a step finder measures its steps against."""
    t = _times(d, hours, interval)
    noise = _noise(d, "pool", t, interval)
    start = _leak_start(d, hours)
    return t, noise + _random_stairs(d, t, start), None, start


def _random_stairs(d: _Draw, t: Array, start: float) -> Array:
    size = d.uniform("stair_mb", 16.0, 64.0) * MB
    return _stairs(t, start, size, d.uniform("stair_every_h", 1.0, 4.0) * HOUR)


def _stairs(t: Array, start: float, size: float, every: float) -> Array:
    """`size` kept at `start` and every `every` after it."""
    return np.where(t >= start, (np.floor((t - start) / every) + 1) * size, 0.0)


def _build_dense(d: _Draw, hours: float, interval: float) -> Any:
    """One sample a second: 30 MB/h on a white + AR mixture (phi per minute 0.8-0.95)."""
    t = _times(d, hours, 1.0)
    phi = d.uniform("phi_per_min", 0.8, 0.95)
    noise = _ar1(d.rng, t, d.uniform("ar_mb", 2.0, 10.0) * MB, -60.0 / np.log(phi))
    noise += _white(d, t)
    start = _leak_start(d, hours)
    return t, noise + _linear(t, start, 30 * MB), None, start


#: healthy families: name -> builder
HEALTHY: dict[str, Builder] = {
    "white": _healthy("white"),
    "white+ar": _healthy("mix"),
    "wander": _healthy("wander"),
    "heavy-tail": _healthy("heavy"),
    "sawtooth": _healthy("sawtooth"),
    "pool-steps": _healthy("pool"),
    "one-step": _build_step,
    "gaps": _build_gaps,
    "restart": _build_restart,
    "daily-load": _build_load(True),
    "daily-no-load": _build_load(False),
    "two-scale": _healthy("two-scale"),
    "quantized": _healthy("quantized"),
    "gpu-levels": _healthy("gpu-levels"),
    "cycle": _healthy("cycle"),
}

#: leaking families: name -> builder; the targets of issue 12 are named by their family
LEAKING: dict[str, Builder] = {
    "white+leak10": _leaking("white", 10.0),
    "mix95+leak10": _leaking("mix95", 10.0),
    "mix95+leak5": _leaking("mix95", 5.0),
    "white+leak10-from-start": _leaking("white", 10.0, from_start=True),
    "mix95+leak10-from-start": _leaking("mix95", 10.0, from_start=True),
    "mix+leak5-40": _leaking("mix", 5.0, 40.0),
    "wander+leak5-40": _leaking("wander", 5.0, 40.0),
    "heavy+leak5-40": _leaking("heavy", 5.0, 40.0),
    "pool+leak5-40": _leaking("pool", 5.0, 40.0),
    "sawtooth+leak5-40": _leaking("sawtooth", 5.0, 40.0),
    "load+leak20": _build_load(True, 20.0),
    "session-leak": _build_session_leak,
    "staircase32/3h": _build_staircase,
    "staircase": _build_random_staircase,
    "pool+staircase": _build_pool_staircase,
    "dense+leak30": _build_dense,
    "gpu-levels+leak5-40": _build_levels_leak,
    "cycle+leak5-40": _leaking("cycle", 5.0, 40.0),
}

FAMILIES = {**HEALTHY, **LEAKING}


def draw(family: str, seed: int, hours: float = 36.0, interval_s: float = 60.0) -> Scenario:
    """One seeded trace of a family; every family adds a warm-up at the start."""
    try:
        build = FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}") from None
    d = _Draw(seed, family)
    t, values, load, leak_start = build(d, hours, interval_s)
    if not d.params.pop("own_warmup", False):
        values = values + _warmup(d, t)
    values = BASE_BYTES + values
    if d.params.pop("whole_mib", False):  # as nvidia-smi reports it
        values = np.round(values / MIB) * MIB
    return Scenario(family, seed, t, values, load, leak_start, d.params)
