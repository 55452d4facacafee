"""The leak detector on seeded traces: leaks are found, healthy memory is not."""

from __future__ import annotations

import numpy as np
import pytest

from replay import replay  # tests/replay.py
from vramguard import scenarios, synthetic
from vramguard.trend import DetectorConfig, LeakDetector, detect_leak, fit_ramp, fit_ramps

MB = 1e6
HOUR = 3600.0


@pytest.mark.parametrize("name", ["white", "drift", "white+sawtooth", "white+warmup"])
def test_healthy_traces_are_stable(name: str) -> None:
    trace = synthetic.family(name, seed=11, hours=24)
    trend = detect_leak(trace.t, trace.values)
    assert trend.verdict == "stable", trend.reason
    assert trend.first_alert_t is None


@pytest.mark.parametrize("size", [64, 128])
def test_a_one_off_step_is_not_a_leak(size: int) -> None:
    trace = synthetic.family(f"white+step{size}", seed=3, hours=24)
    trend = detect_leak(trace.t, trace.values)
    assert trend.verdict == "stable", trend.reason
    assert [round(s.size_bytes / MB) for s in trend.steps] == [pytest.approx(size, abs=6)]


@pytest.mark.parametrize(("name", "within_h"), [("white+leak10", 1.5), ("drift+leak20", 2.0)])
def test_slow_leaks_are_found_within_hours(name: str, within_h: float) -> None:
    trace = synthetic.family(name, seed=5, hours=30)
    trend = detect_leak(trace.t, trace.values)
    assert trend.verdict == "leak"
    assert trace.leak_start_t is not None and trend.first_alert_t is not None
    delay_h = (trend.first_alert_t - trace.leak_start_t) / HOUR
    assert 0 <= delay_h <= within_h
    rate = float(name.rpartition("leak")[2]) * MB
    low, high = trend.slope_ci_bytes_per_hour or (0, 0)
    assert trend.slope_bytes_per_hour is not None and trend.slope_bytes_per_hour > 0
    assert low < rate * 1.2 and high > rate * 0.3  # the leak's rate, diluted by flat hours


def test_a_staircase_is_a_leak_even_though_each_step_alone_is_not() -> None:
    trace = synthetic.family("white+staircase", seed=2, hours=30)
    detector = LeakDetector()
    detector.update_many(trace.t, trace.values)
    assert detector.alarms and detector.alarms[0].kind == "staircase"
    assert trace.leak_start_t is not None
    assert detector.alarms[0].t - trace.leak_start_t <= 13 * HOUR


def test_a_staircase_whose_steps_the_finder_partly_missed_is_called_at_its_third_step() -> None:
    """32 MB steps every 3 h on 5 MB of AR(1) noise sit at the step finder's threshold: it
    found the first and third step and missed the second. The missed one, a rise one level
    shift explains better than a ramp, still counts towards the staircase (it used to wait
    for a third found step, 18 h after the first)."""
    trace = scenarios.draw("staircase32/3h", 12)
    detector = LeakDetector()
    detector.update_many(trace.t, trace.values)
    assert trace.leak_start_t is not None
    found = [s for s in detector.steps if 0 <= s.t - trace.leak_start_t < 6.5 * HOUR]
    assert len(found) == 2  # the finder missed one of the first three steps
    first = detector.alarms[0]
    assert first.kind == "staircase"
    assert 6 * HOUR <= first.t - trace.leak_start_t <= 6.5 * HOUR


def test_a_gpu_process_moving_among_levels_it_held_before_is_no_staircase() -> None:
    """GPU memory as a driver reports it: flat, moving between a few levels in 2 MiB pages.
    The finder misses many of its moves (a level change in the reference buckets widens
    their noise), so a fall rarely cancels a rise and three rises in a day add up; but
    each climb only goes back to a level held before. A staircase must set a new high
    (this run alarmed six times, from 4.5 h, when it did not have to)."""
    detector = replay(scenarios.draw("gpu-levels", 3))
    assert len([s for s in detector.steps if s.size_bytes > 0]) >= 6  # rises it could count
    assert detector.alarms == [], detector.alarms[0].reason


def test_a_leak_in_2_mib_pages_over_gpu_levels_is_a_staircase_after_it_began() -> None:
    """The same levels with pages allocated and never freed: found within 2 h of the leak's
    start, not before it (the run's levels made a staircase 2.8 h before it did)."""
    trace = scenarios.draw("gpu-levels+leak5-40", 3)
    detector = replay(trace)
    assert trace.leak_start_t is not None and detector.alarms
    first = detector.alarms[0]
    assert first.kind == "staircase"
    assert 0 <= first.t - trace.leak_start_t <= 2 * HOUR


def test_the_plans_detector_would_alarm_where_ours_does_not() -> None:
    # the plan: least squares over the last 10 samples, alarm above 1 MB/min
    trace = synthetic.family("white", seed=1, hours=6)
    plan_alarms = sum(
        np.polyfit(trace.t[i - 10 : i] / 60, trace.values[i - 10 : i] / MB, 1)[0] > 1.0
        for i in range(10, len(trace.t))
    )
    assert plan_alarms > 0
    assert detect_leak(trace.t, trace.values).first_alert_t is None


def test_feeding_sample_by_sample_equals_bulk_replay() -> None:
    trace = synthetic.family("white+leak20", seed=8, hours=12)
    online = LeakDetector()
    for t, v in zip(trace.t.tolist(), trace.values.tolist(), strict=True):
        online.update(t, v)
    online.flush()
    bulk = LeakDetector()
    bulk.update_many(trace.t, trace.values)
    bulk.flush()
    assert [a.t for a in online.alarms] == [a.t for a in bulk.alarms]
    assert online.alarms


def test_samples_faster_than_buckets_are_averaged_into_them() -> None:
    rng = np.random.default_rng(4)
    t = np.arange(0, 10 * HOUR, 5.0)  # one sample every 5 s
    values = 500 * MB + rng.normal(0, 5 * MB, len(t)) + np.maximum(t - 4 * HOUR, 0) / HOUR * 20 * MB
    trend = detect_leak(t, values)
    assert trend.verdict == "leak"
    assert trend.first_alert_t is not None and trend.first_alert_t < 5.5 * HOUR


def test_short_series_are_insufficient_data() -> None:
    t = np.arange(0, 1200.0, 60.0)
    assert detect_leak(t, np.full(len(t), 5e8)).verdict == "insufficient-data"
    assert detect_leak([], []).verdict == "insufficient-data"


def test_time_going_backwards_is_refused() -> None:
    with pytest.raises(ValueError, match="backwards"):
        detect_leak([0.0, 60.0, 30.0], [1.0, 2.0, 3.0])
    detector = LeakDetector()
    detector.update(10.0, 1.0)
    with pytest.raises(ValueError, match="backwards"):
        detector.update(5.0, 1.0)


def test_non_finite_samples_are_ignored() -> None:
    trace = synthetic.family("white", seed=1, hours=6)
    values = trace.values.copy()
    values[::7] = np.nan
    assert detect_leak(trace.t, values).samples == np.isfinite(values).sum()


def test_the_history_stays_bounded_however_long_the_run() -> None:
    detector = LeakDetector()
    trace = synthetic.family("white", seed=2, hours=48)
    detector.update_many(trace.t, trace.values)
    times, _ = detector.buckets()
    # the window and the day and a half of history its noise is measured over, no more
    assert len(times) <= 4 * int(DetectorConfig().history_s / 60) + 8
    assert times[-1] - times[0] < 0.75 * (trace.t[-1] - trace.t[0])


def test_a_scaled_detector_judges_minutes_like_the_default_judges_hours() -> None:
    config = DetectorConfig().scaled(600.0)  # 10 minutes stand for 8 hours
    trace = synthetic.family("white+leak20", seed=6, hours=30)
    k = 600.0 / (8 * HOUR)
    scaled = detect_leak(trace.t * k, trace.values, config)
    default = detect_leak(trace.t, trace.values)
    assert scaled.verdict == default.verdict == "leak"
    assert scaled.first_alert_t == pytest.approx(default.first_alert_t * k, rel=0.01)


def test_ramp_fits_agree_with_the_vectorised_version() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(0, 8 * HOUR, 60.0)
    y = rng.normal(0, 5 * MB, len(t)) + np.maximum(t - 5 * HOUR, 0) * 0.01
    origins = [0.0, 5 * HOUR, 6 * HOUR]
    for one, many in zip(
        (fit_ramp(t, y, o) for o in origins), fit_ramps(t, y, origins), strict=True
    ):
        assert one is not None
        assert many.slope_per_s == pytest.approx(one.slope_per_s)
        assert many.stderr_per_s == pytest.approx(one.stderr_per_s)


def test_a_step_is_a_level_shift_in_the_fit() -> None:
    t = np.arange(0, 4 * HOUR, 60.0)
    y = np.where(t >= 2 * HOUR, 64 * MB, 0.0) + np.random.default_rng(1).normal(0, MB, len(t))
    plain = fit_ramp(t, y)
    shifted = fit_ramp(t, y, step_times=[2 * HOUR])
    assert plain is not None and shifted is not None
    assert plain.slope_per_s * HOUR > 20 * MB  # the step reads as a climb
    assert abs(shifted.slope_per_s * HOUR) < 1 * MB  # as a shift it does not


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        DetectorConfig(bucket_s=0)
    with pytest.raises(ValueError):
        DetectorConfig(confirm_buckets=0)
