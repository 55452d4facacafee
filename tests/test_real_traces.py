"""Real healthy processes, recorded for half an hour each with `vramguard run`
(bench/record_real.py): the detector must call every one of them stable."""

from __future__ import annotations

from pathlib import Path

import pytest

from vramguard.samplelog import read_log
from vramguard.trend import DetectorConfig, detect_leak

REAL = Path(__file__).parent / "data" / "real"
LOGS = sorted(REAL.glob("*.jsonl"))


def test_there_are_at_least_five_real_traces_of_half_an_hour() -> None:
    assert len(LOGS) >= 5
    for path in LOGS:
        _, (t, _) = read_log(path).metric()
        assert t[-1] - t[0] >= 30 * 60, path.name


@pytest.mark.parametrize("path", LOGS, ids=[p.stem for p in LOGS])
def test_a_real_healthy_process_is_stable(path: Path) -> None:
    log = read_log(path)
    name, (t, values) = log.metric()
    trend = detect_leak(t, values, DetectorConfig().for_duration(float(t[-1] - t[0])))
    assert trend.verdict == "stable", (name, trend.reason)
    assert log.result is not None and log.result["verdict"] == "stable"
