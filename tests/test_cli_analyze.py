"""`vramguard analyze` on real files: verdicts, exit codes, reports, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vramguard import synthetic
from vramguard.cli import main
from vramguard.report import time_unit
from vramguard.samplelog import SampleLogWriter
from vramguard.tracker import Sample

LOGS = Path(__file__).parent / "data" / "logs"


def write_log(path: Path, name: str, seed: int = 4, hours: float = 20) -> synthetic.Trace:
    trace = synthetic.family(name, seed, hours=hours)
    with SampleLogWriter(path, source={"synthetic": name}) as log:
        for t, value in zip(trace.t.tolist(), trace.values.tolist(), strict=True):
            log.sample(
                Sample(t=t, wall_s=t, process_gpu_bytes=int(value), device_total_bytes=8 * 10**9)
            )
    return trace


def analyze_json(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = subprocess.run(
        [sys.executable, "-m", "vramguard", "analyze", *args, "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "Traceback" not in result.stderr
    return result.returncode, json.loads(result.stdout) if result.stdout else {}


def test_a_leaking_log_is_a_leak_with_exit_1(tmp_path: Path) -> None:
    trace = write_log(tmp_path / "leak.jsonl", "white+leak20")
    code, result = analyze_json(str(tmp_path / "leak.jsonl"))
    assert code == 1
    assert result["verdict"] == "leak"
    assert result["metric"] == "process_gpu_bytes"
    assert result["samples"] == len(trace.t)
    assert result["first_alert_t"] > trace.leak_start_t
    low, high = result["slope_ci_bytes_per_hour"]
    assert low <= result["slope_bytes_per_hour"] <= high
    assert result["peak_bytes"] == pytest.approx(float(trace.values.max()))
    assert result["time_to_exhaustion_s"] > 0
    assert result["likely_source"] == "unaccounted"


def test_a_stable_log_is_stable_with_exit_0(tmp_path: Path) -> None:
    write_log(tmp_path / "ok.jsonl", "drift")
    code, result = analyze_json(str(tmp_path / "ok.jsonl"))
    assert (code, result["verdict"], result["first_alert_t"]) == (0, "stable", None)


def test_a_short_valid_log_is_insufficient_data_with_exit_0() -> None:
    code, result = analyze_json(str(LOGS / "short.jsonl"))
    assert (code, result["verdict"]) == (0, "insufficient-data")


def test_nvidia_smi_csv_with_a_metric_chosen(tmp_path: Path) -> None:
    code, result = analyze_json(str(LOGS / "nvsmi_apps.csv"), "--metric", "pid:5151")
    assert code == 0
    assert result["metric"] == "pid:5151" and result["samples"] == 10


def test_plot_and_html_report_are_written_and_not_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_log(tmp_path / "leak.jsonl", "white+leak20", hours=10)
    png, page = tmp_path / "out.png", tmp_path / "out.html"
    assert (
        main(["analyze", str(tmp_path / "leak.jsonl"), "--plot", str(png), "--html", str(page)])
        == 1
    )
    err = capsys.readouterr().err
    assert f"wrote {png}" in err and f"wrote {page}" in err  # a write the user asked for is said
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = page.read_text()
    assert "data:image/png;base64," in html and "growth, whole series" in html
    png.write_bytes(b"mine")
    assert main(["analyze", str(tmp_path / "leak.jsonl"), "--plot", str(png)]) == 2
    assert png.read_bytes() == b"mine"
    assert "nothing was run" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name",
    ["missing.jsonl", "empty.log", "binary.log", "header_only.csv", "no_time_column.csv",
     "backwards.jsonl", "not_a_number.jsonl"],
)  # fmt: skip
def test_bad_files_are_one_line_and_exit_2(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(LOGS / name)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vramguard: error: ") and err.count("\n") == 1


def test_a_metric_the_log_lacks_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(LOGS / "short.jsonl"), "--metric", "process_gpu_bytes"]) == 2
    assert "has no metric 'process_gpu_bytes'" in capsys.readouterr().err


def test_a_torn_last_line_warns_and_still_judges(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(LOGS / "truncated.jsonl")]) == 0
    assert "warning: line 7 is torn" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("span_s", "unit"), [(30.0, "seconds"), (600.0, "minutes"), (36_000.0, "hours")]
)
def test_a_plot_is_drawn_on_the_scale_of_its_run(span_s: float, unit: str) -> None:
    assert time_unit(span_s)[1] == unit  # a 10-minute run in minutes, not 0-0.17 hours
