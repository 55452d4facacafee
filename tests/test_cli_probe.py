"""`vramguard probe` as a user runs it: a real subprocess, real output, real exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

from vramguard.cli import main


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
    assert all(reading[f] is not None or f in reading["unavailable"] for f in reading["sources"])


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
