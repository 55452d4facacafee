"""The long check: a leak the window's slope test lost sight of is still found."""

from __future__ import annotations

from dataclasses import replace

import pytest

from replay import alarms_on  # tests/replay.py
from vramguard import scenarios
from vramguard.trend import HOUR, DetectorConfig

MB = 1e6


def alarms(family: str, seed: int, config: DetectorConfig) -> tuple[list[float], list[str]]:
    trace = scenarios.draw(family, seed)
    found = alarms_on(trace, config)
    assert trace.leak_start_t is not None
    return [a.t - trace.leak_start_t for a in found], [a.reason for a in found]


@pytest.mark.parametrize(
    ("family", "seed"),
    [
        # 5 MB/h from 6.8 h on AR noise of 7 MB: the slope test passed for an hour while a
        # wander still explained the climb, then the window slid into the leak, its
        # variogram took the leak for noise and z fell to 1.5-3 for the 29 h left
        ("mix95+leak5", 3),
        # 37 MB/h from 14 h on a pool that moves by 28 MB steps the finder never found: the
        # window's error bars hold the pool's swings, z stays near 3
        ("pool+leak5-40", 11),
    ],
)
def test_a_leak_the_window_never_alarms_on_is_found_by_the_long_check(
    family: str, seed: int
) -> None:
    delays, _ = alarms(family, seed, DetectorConfig(long_z=0.0))
    assert delays == []  # the window alone: never, in 36 h
    delays, reasons = alarms(family, seed, DetectorConfig())
    assert delays and 0 < delays[0] < 16 * HOUR
    assert "after a flatter history" in reasons[0] and "likelihood ratio" in reasons[0]


def test_the_long_check_is_off_with_the_wander_check_and_scales_with_the_window() -> None:
    # the slope test silenced (no z reaches its threshold): only the long check can alarm
    silent = DetectorConfig(z_alarm=1e9)
    delays, reasons = alarms("mix95+leak5", 3, silent)
    assert delays and all("after a flatter history" in r for r in reasons)
    # without the fitted noise (the wander check off) it is not asked
    assert alarms("mix95+leak5", 3, replace(silent, wander_z=0.0))[0] == []
    assert alarms("mix95+leak5", 3, replace(silent, long_z=0.0))[0] == []
    assert DetectorConfig().scaled(600.0).long_every_s == pytest.approx(HOUR * 600.0 / (8 * HOUR))
