"""MemoryTracker: bounded history, peaks, fragmentation, and alerts that name a source."""

from __future__ import annotations

import pytest

from vramguard import synthetic
from vramguard.tracker import MemoryTracker, Sample, attribute, choose_metric
from vramguard.trend import DetectorConfig

MB = 10**6


def leaking_samples(component: str | None, hours: float = 12) -> list[Sample]:
    """A process whose GPU memory grows 20 MB/h from hour 4, carried by `component`."""
    trace = synthetic.family("white+leak20", seed=7, hours=hours)
    samples = []
    for t, value in zip(trace.t.tolist(), trace.values.tolist(), strict=True):
        growth = max(t - (trace.leak_start_t or 0), 0) / 3600 * 20 * MB
        extra = {component: int(50 * MB + growth)} if component else {}
        samples.append(
            Sample(t=t, process_gpu_bytes=int(value), device_total_bytes=8 * 10**9,
                   reference_bytes=extra.get("reference_bytes", 30 * MB),
                   staging_in_use_bytes=extra.get("staging_in_use_bytes", 10 * MB),
                   staging_idle_bytes=5 * MB, sessions_active=1, sessions_idle=1)
        )  # fmt: skip
    return samples


@pytest.mark.parametrize(
    ("component", "source"),
    [
        ("reference_bytes", "reference frames"),
        ("staging_in_use_bytes", "staging"),
        (None, "unaccounted"),
    ],
)
def test_an_alert_names_the_component_whose_growth_explains_it(
    component: str | None, source: str
) -> None:
    tracker = MemoryTracker()
    alerts = [a for s in leaking_samples(component) if (a := tracker.add(s))]
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.metric == "process_gpu_bytes"
    assert alert.likely_source == source
    assert alert.slope_bytes_per_hour > 5 * MB
    low, high = alert.slope_ci_bytes_per_hour
    assert low < alert.slope_bytes_per_hour < high
    # 8 GB budget, ~0.6 GB in use, ~20 MB/h: hundreds of hours left
    assert alert.time_to_exhaustion_s is not None
    assert 100 * 3600 < alert.time_to_exhaustion_s < 1000 * 3600


def test_growing_session_count_is_blamed_on_sessions() -> None:
    samples = [
        Sample(t=float(i), host_rss_bytes=100 * MB + i * MB, sessions_active=1 + i // 10)
        for i in range(60)
    ]
    assert attribute(samples, "host_rss_bytes", 0.0) == "sessions"


def test_retained_heap_explains_host_growth_only() -> None:
    samples = [
        Sample(t=float(i), host_rss_bytes=100 * MB + i * MB, heap_free_bytes=i * MB)
        for i in range(60)
    ]
    assert attribute(samples, "host_rss_bytes", 0.0) == "retained heap"


def test_history_is_bounded_and_peaks_are_kept() -> None:
    tracker = MemoryTracker(max_samples=10)
    for i in range(100):
        tracker.add(Sample(t=float(i), host_rss_bytes=1000 - i if i != 50 else 5000))
    assert len(tracker.samples) == 10
    assert tracker.peak == 5000
    assert tracker.metric == "host_rss_bytes"


def test_fragmentation_is_idle_share_of_pool_and_free_share_of_heap() -> None:
    tracker = MemoryTracker()
    tracker.add(Sample(t=0.0, staging_in_use_bytes=30, staging_idle_bytes=10,
                       heap_in_use_bytes=600, heap_free_bytes=400))  # fmt: skip
    assert tracker.fragmentation() == {"pool_idle_ratio": 0.25, "heap_free_ratio": 0.4}
    assert MemoryTracker().fragmentation() == {"pool_idle_ratio": None, "heap_free_ratio": None}


def test_trend_is_the_live_view_without_replay() -> None:
    tracker = MemoryTracker(detector_config=DetectorConfig())
    assert tracker.trend().verdict == "insufficient-data"
    for sample in leaking_samples(None):
        tracker.add(sample)
    trend = tracker.trend()
    assert trend.verdict == "leak"
    assert trend.slope_bytes_per_hour is not None and trend.slope_bytes_per_hour > 0


def test_metric_choice_prefers_gpu_then_device_then_host() -> None:
    assert choose_metric(["host_rss_bytes", "device_used_bytes"]) == "device_used_bytes"
    assert choose_metric(["host_rss_bytes", "process_gpu_bytes"]) == "process_gpu_bytes"
    assert choose_metric(["threads"]) is None


def test_sample_from_dict_ignores_unknown_keys_and_needs_t() -> None:
    sample = Sample.from_dict({"t": 1.5, "host_rss_bytes": 10, "mystery": "x", "threads": None})
    assert sample == Sample(t=1.5, host_rss_bytes=10)
    with pytest.raises(ValueError):
        Sample.from_dict({"host_rss_bytes": 10})
    with pytest.raises(ValueError):
        MemoryTracker(max_samples=1)
