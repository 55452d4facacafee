"""bench/leak_detection.py's reading of which healthy runs hold the shape a detection target
requires an alarm on: checked on hand-made runs, and against the traces themselves."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from vramguard.scenarios import Scenario, draw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import leak_detection  # bench/ is not a package


def pool(moves: list[list[float]]) -> bool | None:
    record = {"family": "pool-steps", "params": {"pool_moves": moves}}
    return leak_detection.shaped_like_a_target(record)


def test_three_held_steps_within_six_hours_are_the_staircase_shape() -> None:
    assert pool([[1.0, 1], [3.0, 2], [6.5, 3]]) is True
    # three rises, but spread over more than 6 h
    assert pool([[1.0, 1], [5.0, 2], [9.0, 3]]) is False
    # three rises within 6 h with a fall between: two held
    assert pool([[1.0, 1], [2.0, 2], [3.0, 1], [4.0, 2]]) is False
    # from one step up to four within 6 h
    assert pool([[1.0, 1], [8.0, 2], [9.0, 3], [10.0, 4]]) is True


def test_a_daily_cycle_is_the_5_mb_per_hour_shape_from_a_54_mb_swing() -> None:
    def daily(swing: float) -> bool | None:
        record = {"family": "daily-no-load", "params": {"cycle_mb": swing}}
        return leak_detection.shaped_like_a_target(record)

    assert daily(30.0) is False
    assert daily(53.0) is False
    assert daily(55.0) is True
    assert leak_detection.shaped_like_a_target({"family": "white", "params": {}}) is None


def _pool_bytes(trace: Scenario) -> np.ndarray:
    """The pool's bytes at each sample, from the moves its trace recorded."""
    levels = np.zeros(len(trace.t))
    for hour, after in trace.params["pool_moves"]:
        levels[trace.t >= hour * 3600.0] = after
    return levels * trace.params["pool_step_mb"] * 1e6


def test_the_recorded_pool_moves_are_the_trace_s_steps() -> None:
    for seed in range(20):
        trace = draw("pool-steps", seed)
        if trace.params["pool_step_mb"] >= 40 and len(trace.params["pool_moves"]) >= 4:
            break
    settled = trace.t > 3600.0
    raw = trace.values[settled]
    without_pool = raw - _pool_bytes(trace)[settled]
    # the pool's steps are most of the trace's spread; taking them out leaves the noise
    assert np.std(without_pool) < 0.5 * np.std(raw)


def test_a_staircase_on_a_pool_holds_both_its_pool_moves_and_its_stairs() -> None:
    """pool+staircase: the recorded pool moves and the stairs from the leak's start (every
    stair_every_h, stair_mb each) together are most of the trace's spread; either alone
    leaves much of it."""
    trace = draw("pool+staircase", 1)
    params, t = trace.params, trace.t
    assert trace.leak_start_t is not None
    pool = _pool_bytes(trace)
    every = params["stair_every_h"] * 3600.0
    since = t - trace.leak_start_t
    stairs = np.where(since >= 0, (np.floor(since / every) + 1) * params["stair_mb"] * 1e6, 0.0)
    raw = trace.values[t > 3600.0]
    pool, stairs = pool[t > 3600.0], stairs[t > 3600.0]
    both = np.std(raw - pool - stairs)
    assert both < 0.2 * np.std(raw)
    assert both < 0.5 * min(np.std(raw - pool), np.std(raw - stairs))
