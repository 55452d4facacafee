"""nvidia-smi logs as operators have them: per-row timestamps, GPUs chosen by any id, clock
steps, compute apps that come and go (files in tests/data/nvsmi, made by its generate.py)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from vramguard.cli import main
from vramguard.samplelog import LogError, read_log

DATA = Path(__file__).parent / "data"
NVSMI = DATA / "nvsmi"
MiB = 2**20


def analyze(*argv: str) -> tuple[int, dict[str, object], str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["analyze", *argv, "--json"])
    assert "Traceback" not in err.getvalue()
    return code, (json.loads(out.getvalue()) if code != 2 else {}), err.getvalue()


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "smi.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_issue_log_two_gpus_with_per_row_timestamps_is_judged_not_a_traceback() -> None:
    code, result, err = analyze(str(NVSMI / "issue_two_gpus.csv"))
    assert (code, result["verdict"], result["metric"]) == (1, "leak", "device_used_bytes")
    assert result["samples"] == 360  # one per cycle, not one per row
    assert err == ""  # rows stamped out of GPU order within a cycle are no clock step


def test_the_device_sum_is_per_cycle() -> None:
    log = read_log(NVSMI / "issue_two_gpus.csv")
    _, total = log.series["device_used_bytes"]
    np.testing.assert_array_equal(total, log.series["gpu:0"][1] + log.series["gpu:1"][1])
    times = log.series["device_used_bytes"][0]
    assert times[0] == 0.0 and np.all(np.diff(times) > 59) and np.all(np.diff(times) < 61)


def test_the_leaking_gpu_is_found_alone_with_its_time_to_exhaustion() -> None:
    code, leaking, _ = analyze(str(NVSMI / "issue_two_gpus.csv"), "--metric", "gpu:1")
    assert (code, leaking["verdict"]) == (1, "leak")
    assert 2 * 3600 < float(leaking["first_alert_t"]) < 3 * 3600  # type: ignore[arg-type]
    assert leaking["budget_bytes"] == 23028 * MiB  # memory.total of that GPU
    left = 23028 * MiB - read_log(NVSMI / "issue_two_gpus.csv").series["gpu:1"][1][-1]
    slope = float(leaking["slope_bytes_per_hour"])  # type: ignore[arg-type]
    assert leaking["time_to_exhaustion_s"] == pytest.approx(left / slope * 3600)
    code, healthy, _ = analyze(str(NVSMI / "issue_two_gpus.csv"), "--metric", "gpu:0")
    assert (code, healthy["verdict"]) == (0, "stable")


@pytest.mark.parametrize(
    "chosen", ["gpu:1", "gpu:00000000:18:00.0", "GPU:00000000:18:00.0", "gpu:18:00.0"]
)
def test_a_gpu_is_chosen_by_order_or_bus_id(chosen: str) -> None:
    name, (_, values) = read_log(NVSMI / "issue_two_gpus.csv").metric(chosen)
    assert name == "gpu:1" and values[0] > 1400 * MiB


@pytest.mark.parametrize("chosen", ["gpu:5", "gpu:GPU-00000005-aaaa-bbbb-cccc-000000000005"])
def test_a_gpu_is_chosen_by_index_or_uuid(chosen: str) -> None:
    name, (_, values) = read_log(NVSMI / "eight_gpus.csv").metric(chosen)
    assert name == "gpu:5" and abs(values[0] - 9000 * MiB) <= 2 * MiB


def test_a_gpu_is_chosen_by_name_when_the_name_tells_them_apart(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "timestamp, name, pci.bus_id, memory.used [MiB]",
        "2026/11/27 10:00:00.001, NVIDIA A10, 00000000:17:00.0, 100 MiB",
        "2026/11/27 10:00:00.004, NVIDIA L4, 00000000:18:00.0, 200 MiB",
    )
    log = read_log(path)
    assert log.metric("gpu:nvidia l4")[0] == "gpu:1"
    assert log.metric("gpu:NVIDIA A10")[0] == "gpu:0"


def test_a_name_eight_cards_share_chooses_none() -> None:
    log = read_log(NVSMI / "eight_gpus.csv")
    with pytest.raises(LogError, match=r"no metric 'gpu:NVIDIA H100 80GB HBM3' \(it has: dev"):
        log.metric("gpu:NVIDIA H100 80GB HBM3")


def test_eight_gpus_timestamp_not_first_values_without_units() -> None:
    log = read_log(NVSMI / "eight_gpus.csv")
    assert sorted(log.series) == ["device_used_bytes"] + [f"gpu:{n}" for n in range(8)]
    times, total = log.series["device_used_bytes"]
    assert len(total) == 40 and list(times[:2]) == [0.0, 30.0]
    assert abs(total[0] - sum(4000 + 1000 * g for g in range(8)) * MiB) <= 16 * MiB
    assert log.budgets["device_used_bytes"] == 8 * 81559 * MiB


def test_lms_intervals_gib_units_and_na_gaps() -> None:
    log = read_log(NVSMI / "one_gpu_lms_gib.csv")
    times, values = log.series["gpu:0"]
    assert len(values) == 117  # three [N/A] are gaps, not zeros
    assert np.median(np.diff(times)) == pytest.approx(0.5, abs=0.004)
    assert values.min() > 2.48 * 2**30 and log.budgets["gpu:0"] == 24 * 2**30


def test_a_clock_stepping_back_is_a_warning_and_the_sample_is_placed_by_order() -> None:
    code, result, err = analyze(str(NVSMI / "clock_step.csv"))
    assert code == 0 and result["samples"] == 120
    assert "vramguard: warning: line 122: the clock steps back (2026/11/27 10:58:00.000 after " \
        "2026/11/27 10:59:00.000)" in err  # fmt: skip
    times = read_log(NVSMI / "clock_step.csv").series["gpu:1"][0]
    assert np.all(np.diff(times) == 60.0)  # one median interval after the previous cycle


def test_the_two_line_backwards_log_is_now_read_with_a_warning() -> None:
    log = read_log(DATA / "logs" / "backwards.csv")
    assert len(log.series["gpu:0"][0]) == 2
    assert log.warnings[0].startswith("line 3: the clock steps back")


def test_compute_apps_that_come_and_go() -> None:
    log = read_log(NVSMI / "apps_come_and_go.csv")
    assert log.kind == "nvidia-smi-apps"
    assert sorted(log.series) == ["pid:4242", "pid:5151", "pid:6161"]
    times, values = log.series["pid:5151"]
    assert list(times[[0, -1]]) == [20 * 60.0, 49 * 60.0] and len(values) == 30
    assert log.series["pid:6161"][0][0] == 70 * 60.0  # after ten minutes of no processes
    assert log.default_metric == "pid:4242"


def test_a_process_on_two_gpus_is_summed_per_cycle(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "timestamp, gpu_bus_id, pid, used_gpu_memory [MiB]",
        "2026/11/27 10:00:00.001, 00000000:17:00.0, 77, 100 MiB",
        "2026/11/27 10:00:00.003, 00000000:18:00.0, 77, 50 MiB",
        "2026/11/27 10:01:00.001, 00000000:17:00.0, 77, 101 MiB",
        "2026/11/27 10:01:00.002, 00000000:18:00.0, 77, 50 MiB",
    )
    times, values = read_log(path).series["pid:77"]
    assert list(times) == [0.0, 60.0] and list(values) == [150 * MiB, 151 * MiB]


def test_nvidia_smi_restarted_on_the_same_file_repeats_its_header() -> None:
    log = read_log(NVSMI / "restarted.csv")
    assert len(log.series["gpu:0"][0]) == 20 and log.warnings == []


def test_gpus_without_an_id_column_and_per_row_timestamps_by_row_order(tmp_path: Path) -> None:
    lines = ["timestamp, memory.used [MiB], utilization.gpu [%]"]
    for minute in range(5):
        lines.append(f"2026/11/27 10:0{minute}:00.002, 100 MiB, 3 %")
        lines.append(f"2026/11/27 10:0{minute}:00.005, 200 MiB, 4 %")
    log = read_log(write(tmp_path, *lines))
    assert sorted(log.series) == ["device_used_bytes", "gpu:0", "gpu:1"]
    assert set(log.series["gpu:1"][1]) == {200 * MiB}
    assert set(log.series["device_used_bytes"][1]) == {300 * MiB}


def test_a_cycle_missing_a_gpu_value_is_left_out_of_the_sum(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "timestamp, index, memory.used [MiB]",
        "2026/11/27 10:00:00.001, 0, 100 MiB",
        "2026/11/27 10:00:00.002, 1, 200 MiB",
        "2026/11/27 10:01:00.001, 0, [N/A]",
        "2026/11/27 10:01:00.002, 1, 201 MiB",
        "2026/11/27 10:02:00.001, 0, 100 MiB",
        "2026/11/27 10:02:00.002, 1, 202 MiB",
    )
    log = read_log(path)
    assert list(log.series["device_used_bytes"][0]) == [0.0, 120.0]
    assert log.warnings == ["1 of 3 cycles lack a GPU's value: left out of device_used_bytes"]


def test_a_torn_last_row_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "timestamp, index, memory.used [MiB], memory.total [MiB]",
        "2026/11/27 10:00:00.001, 0, 100 MiB, 1000 MiB",
        "2026/11/27 10:01:00.001, 0, 1",
    )
    log = read_log(path)
    assert log.warnings == ["line 3 is torn (the writer stopped mid-line): skipped"]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["timestamp, name, pci.bus_id", "2026/11/27 10:00:00.000, A10, 0:17:00.0"],
         "neither memory.used nor used_gpu_memory"),
        (["timestamp, gpu_bus_id, used_gpu_memory [MiB]", "2026/11/27 10:00:00.000, 0:1, 5 MiB"],
         "compute-apps CSV without a pid column"),
        (["2026/11/27 10:00:00.000, 0, 5, 6"], "unrecognised CSV without a header"),
        (["timestamp, memory.used [MiB]", "2026/13/27 10:00:00.000, 5 MiB"],
         "line 2 cannot be read"),
        (["timestamp, memory.used [MiB]", "2026/11/27 10:00:00.000, 5 parsecs"],
         "line 2 cannot be read"),
        (["timestamp, memory.used [MiB]", "2026/11/27 10:00:00.000, 5 MiB, 3",
          "2026/11/27 10:01:00.000, 5 MiB"], "line 2 has 3 columns, not 2"),
    ],
)  # fmt: skip
def test_bad_nvidia_smi_logs_are_one_line_and_exit_2(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    code, _, err = analyze(str(write(tmp_path, *lines)))
    assert code == 2 and err.count("\n") == 1 and message in err
