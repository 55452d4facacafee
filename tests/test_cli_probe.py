"""`vramguard probe` as a user runs it: a real subprocess, real output, real exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fake_nvml import NVML_ERROR_GPU_IS_LOST, NVML_ERROR_NO_PERMISSION, FakeGpu, FakeNvml
from vramguard import probes
from vramguard.cli import main
from vramguard.probes import FIELDS
from vramguard.probes.nvml import NvmlProbe
from vramguard.probes.process import ProcessProbe


def vramguard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vramguard", *args], capture_output=True, text=True, timeout=60
    )


def test_probe_prints_the_probes_and_real_numbers() -> None:
    result = vramguard("probe")
    assert result.returncode == 0, result.stderr
    assert "host_rss_bytes" in result.stdout
    assert "MiB" in result.stdout
    for name in ("process", "nvml", "drm", "windows", "metal"):
        assert name in result.stdout


def test_probe_json_is_bytes_with_every_probe_and_a_reason_for_each_unavailable_one() -> None:
    result = vramguard("probe", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    names = [p["name"] for p in document["probes"]]
    assert names == ["process", "nvml", "drm", "windows", "metal"]
    assert all(p["available"] or p["reason"] for p in document["probes"])
    reading = document["reading"]
    assert isinstance(reading["host_rss_bytes"], int) and reading["host_rss_bytes"] > 2**20
    measured = {f for f in FIELDS if reading[f] is not None}
    assert set(reading["sources"]) == measured
    assert set(reading["unavailable"]) == set(FIELDS) - measured
    working = {p["name"] for p in document["probes"] if p["available"]}
    assert set(reading["sources"].values()) <= working
    assert reading["sources"]["host_rss_bytes"] == "process"
    assert all(reading["unavailable"][f] for f in reading["unavailable"])


def test_probe_of_a_pid_that_does_not_exist_is_one_line_and_exit_2() -> None:
    result = vramguard("probe", "--pid", "4194000")
    assert result.returncode == 2
    assert result.stderr.strip() == "vramguard: error: no process with pid 4194000"
    assert result.stdout == ""


def test_bad_pid_values_are_one_line_and_exit_2(capsys) -> None:  # type: ignore[no-untyped-def]
    for value in ("abc", "-5", "0"):
        assert main(["probe", "--pid", value]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "invalid pid" in err and "Traceback" not in err


def test_no_command_and_unknown_command_exit_2(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_python_dash_m_and_version() -> None:
    result = vramguard("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("vramguard ")


@pytest.mark.parametrize(
    ("call", "code", "reason"),
    [
        ("nvmlDeviceGetName", NVML_ERROR_GPU_IS_LOST, "GPU is lost"),
        ("nvmlSystemGetDriverVersion", NVML_ERROR_NO_PERMISSION, "permission denied"),
        ("nvmlDeviceGetComputeRunningProcesses_v3", NVML_ERROR_NO_PERMISSION, "permission denied"),
        ("nvmlDeviceGetMemoryInfo_v2", NVML_ERROR_GPU_IS_LOST, "GPU is lost"),
    ],
)
def test_probe_with_a_vendor_error_prints_the_reason_and_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], call: str, code: int,
    reason: str,
) -> None:  # fmt: skip
    for as_json in (False, True):
        fake = FakeNvml([FakeGpu()])
        fake.fail(call, code)
        nvml = NvmlProbe(library=fake, in_pid_namespace=lambda: False)
        monkeypatch.setattr(probes, "_probes", [ProcessProbe(), nvml])
        assert main(["probe", "--json"] if as_json else ["probe"]) == 0
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        assert reason in out
        if as_json:
            document = json.loads(out)
            assert isinstance(document["reading"]["host_rss_bytes"], int)
        assert fake.initialised == 0  # probe's teardown shut NVML down
