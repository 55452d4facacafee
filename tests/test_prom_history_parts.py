"""The parts of the Prometheus reader that need no server: ranges cut into chunks, series
names, times and units (the server itself: tests/test_prom_history.py)."""

from __future__ import annotations

import itertools
import os

import pytest

from vramguard.promhistory import (
    PrometheusError,
    RangeQuery,
    parse_time,
    series_name,
    unit_of,
)

WEEK_S = 7 * 86400.0


def test_a_week_at_one_minute_fits_one_query() -> None:
    query = RangeQuery("http://127.0.0.1:9090", "up", 0.0, WEEK_S - 60, 60.0)
    assert query.chunks() == [(0.0, WEEK_S - 60)]  # 10,080 points, under 11,000


@pytest.mark.parametrize(("step", "points"), [(60.0, 1500), (30.0, 10_000), (15.0, 777)])
def test_chunks_cover_the_range_on_one_grid_without_overlap(step: float, points: int) -> None:
    query = RangeQuery("http://127.0.0.1:9090", "up", 1000.0, 1000.0 + WEEK_S, step)
    chunks = query.chunks(points)
    assert chunks[0][0] == 1000.0 and chunks[-1][1] == 1000.0 + WEEK_S
    for (_, end), (start, _) in itertools.pairwise(chunks):
        assert start == end + step  # the next grid point: none read twice, none skipped
    for start, end in chunks:
        assert (end - start) / step + 1 <= points
        assert (start - 1000.0) % step == 0
    total = sum(round((end - start) / step) + 1 for start, end in chunks)
    assert total == round(WEEK_S / step) + 1


def test_series_are_named_as_promql_writes_them() -> None:
    metric = {"__name__": "DCGM_FI_DEV_FB_USED", "gpu": "0", "Hostname": "a"}
    assert series_name(metric) == 'DCGM_FI_DEV_FB_USED{gpu="0",Hostname="a"}'
    assert series_name({"__name__": "up"}) == "up"
    assert series_name({}) == "{}"
    assert series_name({"path": 'C:\\x "y"'}) == '{path="C:\\\\x \\"y\\""}'


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1795000000", 1795000000.0), ("2026-11-27T10:00:00Z", 1795773600.0),
     ("2026-11-27 10:00", 1795773600.0), ("2026-11-27T12:00:00+02:00", 1795773600.0)],
)  # fmt: skip
def test_times_are_unix_seconds_or_iso_8601_in_utc(text: str, seconds: float) -> None:
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["yesterday", "-5", "nan", "2026-13-01"])
def test_a_time_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=f"invalid time {text!r}"):
        parse_time(text)


def test_units_from_the_metric_the_query_or_the_caller() -> None:
    assert unit_of("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_USED", None) == 2**20
    assert unit_of("vramguard_process_gpu_memory_bytes", "x", None) == 1
    assert unit_of("", "sum by (gpu) (DCGM_FI_DEV_FB_USED)", None) == 2**20
    assert unit_of("", "sum(nvidia_smi_memory_used_bytes)", None) == 1
    assert unit_of("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_USED", "B") == 1
    with pytest.raises(PrometheusError, match="cannot tell the unit of 'gpu_mem'"):
        unit_of("gpu_mem", "gpu_mem", None)


def test_credentials_never_appear_in_the_url_shown() -> None:
    query = RangeQuery("http://me:secret@127.0.0.1:9090/prom/", "up", 0.0, 60.0)
    assert query.shown_url == "http://127.0.0.1:9090/prom"


def test_a_long_history_is_judged_on_every_cpu_by_default() -> None:
    from vramguard.commands.analyze_prometheus import PARALLEL_POINTS, _default_jobs

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert _default_jobs(PARALLEL_POINTS - 1, 50) == 1  # not worth starting workers
    assert _default_jobs(50 * 10_080, 1) == 1  # one series: nothing to share out
    assert _default_jobs(50 * 10_080, 50) == min(cpus or 1, 50)
    assert _default_jobs(3 * 20_000, 3) == min(cpus or 1, 3)
