"""The success criteria can fail: each one, against a result that misses it, and in real soaks.

A criterion that cannot fail tells nothing; each test below starts from a result that meets
every criterion and breaks one thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vramguard import faults
from vramguard.criteria import REFERENCES_MODELLED, Criteria, Measures, judge
from vramguard.encode import EncoderConfig
from vramguard.pools.references import reference_frame_bytes
from vramguard.samplelog import SampleLogWriter
from vramguard.soak import SoakConfig, SoakRunner

MB = 10**6


def healthy(**changes: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "metric": "host_rss_bytes",
        "peak_bytes": 200 * MB,
        "growth_bytes_per_hour": 0.2 * MB,
        "growth_ci_bytes_per_hour": (-0.5 * MB, 0.9 * MB),
        "leak_verdict": "ok",
        "session_reuse_rate": 0.92,
        "frames_dropped_memory": 0,
        "reference_peak_bytes": 14 * MB,
        "failure": None,
    }
    result.update(changes)
    return result


def failed(result: dict[str, Any], time_scale: float = 1.0) -> list[str]:
    rows = judge(Measures(**result), Criteria(), time_scale)
    return [row.name for row in rows if not row.passed]


def test_a_healthy_result_meets_every_criterion() -> None:
    assert failed(healthy()) == []


@pytest.mark.parametrize(
    ("changes", "missed"),
    [
        ({"peak_bytes": 500 * MB}, "peak memory"),
        ({"growth_bytes_per_hour": 12 * MB, "growth_ci_bytes_per_hour": [10 * MB, 14 * MB]},
         "growth per hour"),
        ({"leak_verdict": "leak"}, "growth per hour"),
        ({"session_reuse_rate": 0.84}, "session reuse"),
        ({"frames_dropped_memory": 1}, "frames dropped for memory"),
        ({"reference_peak_bytes": 50 * MB}, "reference frames"),
        ({"failure": "encoder: device lost"}, "run completed"),
    ],
)  # fmt: skip
def test_each_criterion_fails_on_its_own(changes: dict[str, Any], missed: str) -> None:
    assert failed(healthy(**changes)) == [missed]


def test_growth_whose_interval_holds_zero_is_flat_even_above_the_allowance() -> None:
    noisy = healthy(growth_bytes_per_hour=5 * MB, growth_ci_bytes_per_hour=[-1 * MB, 11 * MB])
    assert failed(noisy) == []


def test_a_short_soak_allows_growth_by_its_time_scale_and_no_more() -> None:
    growth = {"growth_bytes_per_hour": 60 * MB, "growth_ci_bytes_per_hour": [50 * MB, 70 * MB]}
    assert failed(healthy(**growth), time_scale=1 / 72) == []
    assert failed(healthy(**growth), time_scale=1 / 24) == ["growth per hour"]


def test_each_row_says_how_its_figure_is_known_and_references_are_modelled() -> None:
    rows = {row.name: row.as_dict() for row in judge(Measures(**healthy()), Criteria())}
    assert rows["reference frames"]["basis"] == REFERENCES_MODELLED
    assert "modelled" in rows["reference frames"]["threshold"]
    assert rows["peak memory"]["basis"] == "measured: host_rss_bytes"
    assert rows["session reuse"]["basis"] == "counted by the session pool"


def test_unmeasured_criteria_pass_and_say_so() -> None:
    unmeasured = healthy(session_reuse_rate=None, reference_peak_bytes=None)
    by_name = {row.name: row.as_dict() for row in judge(Measures(**unmeasured), Criteria())}
    for name in ("session reuse", "reference frames"):
        assert by_name[name]["passed"]
        assert by_name[name]["basis"].startswith("not measured in this run")


def small_soak(tmp_path: Path, criteria: Criteria, seconds: float = 4.0) -> dict[str, Any]:
    config = SoakConfig(
        EncoderConfig("h264", 320, 240, 30, 500, encoder="libx264"),
        duration_s=seconds, ladder_kbps=(300, 500), adapt_every_s=1.0, criteria=criteria,
    )  # fmt: skip
    log = SampleLogWriter(tmp_path / "soak.jsonl")
    try:
        result: dict[str, Any] = SoakRunner(config, log).run().as_dict()
    finally:
        log.close()
    return result


def missed(result: dict[str, Any]) -> set[str]:
    return {row["name"] for row in result["criteria"] if not row["passed"]}


def test_a_real_soak_misses_peak_and_references_when_they_are_over(tmp_path: Path) -> None:
    one_reference = reference_frame_bytes(320, 240)
    tight = Criteria(max_peak_bytes=MB, max_reference_bytes=one_reference, min_reuse_rate=0.0)
    result = small_soak(tmp_path, tight)
    assert result["verdict"] == "fail"
    assert missed(result) == {"peak memory", "reference frames"}
    assert result["peak_bytes"] > MB  # a real process is larger than 1 MB
    assert result["reference_peak_bytes"] >= 2 * one_reference
    assert result["reference_peak_basis"] == REFERENCES_MODELLED


def test_a_real_soak_misses_drops_and_reuse(tmp_path: Path) -> None:
    faults.install("staging@1*2")  # an allocation and its retry fail: that frame is dropped
    try:
        result = small_soak(tmp_path, Criteria(min_reuse_rate=1.0))
    finally:
        faults.install(None)
    assert result["frames_dropped_memory"] == 1
    assert result["session_reuse_rate"] < 1.0
    assert missed(result) == {"frames dropped for memory", "session reuse"}
