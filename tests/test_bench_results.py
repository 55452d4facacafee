"""bench/RESULTS.md is generated from the JSON the benches write, and its renderers keep the
unfavourable figures: checked here so that a hand edit or a dropped column shows."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import results  # noqa: E402  (bench/ is not a package)


def test_results_md_is_what_the_json_files_render() -> None:
    previous = results.RESULTS.read_text(encoding="utf-8")
    assert results.render(previous) == previous, "run: python bench/results.py"


def run(verdict: str, missed: list[str], **changes: Any) -> dict[str, Any]:
    names = ["peak memory", "growth per hour", "session reuse", "run completed"]
    document: dict[str, Any] = {
        "codec": "h264", "resolution": "1920x1080", "baseline": False, "peak_bytes": 245e6,
        "growth_bytes_per_hour": 224.7e6, "growth_ci_bytes_per_hour": [172.8e6, 276.7e6],
        "after_teardown_bytes": 72e6, "session_reuse_rate": 2 / 3, "sessions_created": 4,
        "frames_dropped_memory": 0, "faults": {"encoder": {"count": 2}}, "failure": None,
        "verdict": verdict,
        "criteria": [{"name": n, "passed": n not in missed} for n in names],
    }  # fmt: skip
    document.update(changes)
    return document


def test_a_failing_soak_run_shows_its_growth_interval_faults_and_missed_criteria() -> None:
    table = results.soak_runs_table(
        [("managed", run("fail", ["growth per hour", "session reuse"]))]
    )
    row = table.splitlines()[-1]
    assert "+224.7 MB/h (172.8, 276.7)" in row
    assert "| 2 |" in row  # two faults
    assert row.endswith("| fail (growth, reuse) |")


def test_a_run_without_fault_records_says_so_rather_than_zero() -> None:
    old = run("pass", [])
    del old["faults"]
    assert "not recorded" in results.soak_runs_table([("managed", old)])


def sessions(cold_ms: float, warm_ms: float) -> dict[str, Any]:
    timing = {
        "encoder": "libx264", "repeats": 1, "cold_open_first_packet_ms": cold_ms,
        "warm_acquire_first_packet_ms": warm_ms, "warm_speedup": cold_ms / warm_ms,
        "speedup_per_repeat": [cold_ms / warm_ms], "acquire_only_ms": 0.08,
        "keyframes_first_packet": {"cold": 1, "warm": 1}, "rebuild_ms": 30.0,
        "in_place_ms": None,
    }  # fmt: skip
    ladder = [
        {"codec": "h264", "mode": mode, "created": created, "reuse_rate": reuse,
         "seconds": 12.0, "rss_start_bytes": 60e6, "rss_after_bytes": 65e6,
         "rss_after_trim_bytes": 64e6}
        for mode, created, reuse in (("pool", 4, 0.98), ("always-new", 201, 0.0))
    ]  # fmt: skip
    return {"resolution": "1920x1080", "repeats": 1, "changes": 200,
            "ladder_kbps": [2000, 3500, 5000, 8000], "timings": {"h264": timing},
            "ladder": ladder}  # fmt: skip


def test_the_sessions_speed_up_is_judged_on_equal_work() -> None:
    text = results.sessions_section(sessions(32.1, 8.3))
    assert "3.9x" in text
    assert "is **missed** on equal work" in text
    assert "is met on equal work" in results.sessions_section(sessions(1000.0, 5.0))
