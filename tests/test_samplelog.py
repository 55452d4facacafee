"""The sample log: crash-safe writing, and reading our logs and nvidia-smi's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from vramguard.samplelog import SCHEMA, LogError, SampleLogWriter, read_log
from vramguard.tracker import Sample

LOGS = Path(__file__).parent / "data" / "logs"
MiB = 2**20


def test_written_log_reads_back_with_header_samples_events_and_result(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with SampleLogWriter(path, source={"pid": 1}, config={"interval_s": 60}) as log:
        log.sample(Sample(t=0.0, wall_s=0.0, host_rss_bytes=100, process_gpu_bytes=7))
        log.sample(Sample(t=60.0, wall_s=60.0, host_rss_bytes=110))
        log.event(60.0, "leak_alert", slope_bytes_per_hour=5.0)
        log.result({"verdict": "stable"})
    read = read_log(path)
    assert read.header["schema"] == SCHEMA and read.header["source"] == {"pid": 1}
    assert [s.host_rss_bytes for s in read.samples] == [100, 110]
    assert read.samples[1].process_gpu_bytes is None
    assert read.events[0]["event"] == "leak_alert"
    assert read.result == {"verdict": "stable"}
    assert read.default_metric == "process_gpu_bytes"


def test_an_existing_log_is_never_overwritten_without_force(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text("precious\n")
    with pytest.raises(LogError, match="exists: use --force"):
        SampleLogWriter(path)
    assert path.read_text() == "precious\n"
    SampleLogWriter(path, force=True).close()
    assert json.loads(path.read_text())["schema"] == SCHEMA


def test_a_log_in_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="does not exist"):
        SampleLogWriter(tmp_path / "nope" / "run.jsonl")


_WRITER = """
import sys
from vramguard.samplelog import SampleLogWriter
from vramguard.tracker import Sample
log = SampleLogWriter(sys.argv[1])
for i in range(10**9):
    log.sample(Sample(t=float(i), host_rss_bytes=10**8 + i))
    if i == 200:
        print("written", flush=True)
"""


def test_kill_9_loses_at_most_the_line_being_written(tmp_path: Path) -> None:
    path = tmp_path / "killed.jsonl"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE)
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == b"written"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    log = read_log(path)
    lines = path.read_bytes().split(b"\n")
    full = sum(1 for line in lines[1:-1])  # every line but the header and a possible tail
    assert len(log.samples) >= 200
    assert len(log.samples) == full
    assert [s.t for s in log.samples] == [float(i) for i in range(len(log.samples))]


def test_a_torn_last_line_is_skipped_with_a_warning() -> None:
    log = read_log(LOGS / "truncated.jsonl")
    assert len(log.samples) == 5
    assert log.warnings == ["line 7 is torn (the writer stopped mid-line): skipped"]


def test_unknown_keys_and_events_are_ignored_by_the_sample_reader() -> None:
    log = read_log(LOGS / "short.jsonl")
    assert len(log.samples) == 10
    assert log.default_metric == "host_rss_bytes"
    assert log.result == {"verdict": "stable"}


def test_nvidia_smi_gpu_csv_with_units_and_two_gpus() -> None:
    log = read_log(LOGS / "nvsmi_gpu.csv")
    assert log.kind == "nvidia-smi-gpu"
    t0, gpu0 = log.series["gpu:0"]
    _, gpu1 = log.series["gpu:1"]
    assert gpu0[0] == 1000 * MiB and gpu1[0] == 2000 * MiB
    assert list(t0[:3]) == [0.0, 60.0, 120.0]
    _, total = log.series["device_used_bytes"]
    assert total[5] == (1005 + 2010) * MiB
    assert log.default_metric == "device_used_bytes"


def test_nvidia_smi_noheader_nounits_is_mib() -> None:
    log = read_log(LOGS / "nvsmi_gpu_noheader.csv")
    _, values = log.series["device_used_bytes"]
    assert values[0] == 1500 * MiB and len(values) == 30


def test_nvidia_smi_index_column_names_the_gpus() -> None:
    log = read_log(LOGS / "nvsmi_gpu_index.csv")
    assert {"gpu:0", "gpu:1"} <= set(log.series)
    assert log.series["gpu:1"][1][-1] == 929 * MiB


def test_nvidia_smi_compute_apps_one_series_per_pid_and_na_skipped() -> None:
    log = read_log(LOGS / "nvsmi_apps.csv")
    assert log.kind == "nvidia-smi-apps"
    assert set(log.series) == {"pid:4242", "pid:5151"}
    assert len(log.series["pid:4242"][1]) == 30
    assert len(log.series["pid:5151"][1]) == 10  # the five [N/A] rows are gaps, not zeros
    assert log.default_metric == "pid:4242"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing.jsonl", "no such file"),
        ("empty.log", "empty file"),
        ("binary.log", "binary file"),
        ("no_time_column.csv", "without a timestamp column"),
        ("backwards.jsonl", "line 3: time goes backwards"),
        ("not_a_number.jsonl", "line 3: 'host_rss_bytes' is not a number"),
        ("no_header.jsonl", "no vramguard header"),
        ("broken_middle.jsonl", "line 2 is not valid JSON"),
    ],
)
def test_broken_files_are_one_clear_error(name: str, message: str) -> None:
    with pytest.raises(LogError, match=message) as error:
        read_log(LOGS / name)
    assert "\n" not in str(error.value)


def test_a_metric_the_log_lacks_names_what_it_has() -> None:
    log = read_log(LOGS / "short.jsonl")
    with pytest.raises(LogError, match=r"no metric 'process_gpu_bytes' \(it has: host_rss_bytes"):
        log.metric("process_gpu_bytes")
