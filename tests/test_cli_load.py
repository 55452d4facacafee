"""Load on the command line: analyze --load, run --load-file/--load-command, and what a
person reads of a verdict (its time scale, how much longer, exit codes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vramguard import scenarios
from vramguard.samplelog import SampleLogWriter
from vramguard.tracker import Sample

MB = 1e6


def vramguard(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "vramguard", *args],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    return done


def write_load_log(path: Path, family: str, seed: int, field: str = "sessions_active") -> None:
    trace = scenarios.draw(family, seed)
    assert trace.load is not None
    with SampleLogWriter(path, source={"scenario": family}) as log:
        for t, value, load in zip(trace.t.tolist(), trace.values.tolist(), trace.load.tolist(),
                                  strict=True):  # fmt: skip
            log.sample(Sample(t=t, wall_s=t, host_rss_bytes=int(value), **{field: int(load)}))


def test_memory_that_follows_sessions_is_stable_and_the_load_is_named(tmp_path: Path) -> None:
    log = tmp_path / "load.jsonl"
    write_load_log(log, "daily-load", seed=1)
    done = vramguard("analyze", str(log), "--json")
    result = json.loads(done.stdout)
    assert done.returncode == 0 and result["verdict"] == "stable", result["reason"]
    assert result["load"] == "used" and result["load_field"] == "sessions_active"


def test_growth_per_session_is_a_leak_that_says_so(tmp_path: Path) -> None:
    log = tmp_path / "session-leak.jsonl"
    write_load_log(log, "session-leak", seed=1)
    done = vramguard("analyze", str(log), "--json")
    result = json.loads(done.stdout)
    assert done.returncode == 1 and result["verdict"] == "leak"
    assert "per session" in result["reason"]


def test_load_can_be_any_field_the_log_has(tmp_path: Path) -> None:
    log = tmp_path / "threads.jsonl"
    write_load_log(log, "daily-load", seed=1, field="threads")
    named = json.loads(vramguard("analyze", str(log), "--json", "--load", "threads").stdout)
    assert named["load"] == "used" and named["verdict"] == "stable"
    plain = json.loads(vramguard("analyze", str(log), "--json").stdout)
    assert plain["load"] == "unknown" and "load unknown" in plain["reason"]


def test_a_load_field_the_log_lacks_is_one_line_and_exit_2(tmp_path: Path) -> None:
    log = tmp_path / "load.jsonl"
    write_load_log(log, "daily-load", seed=1)
    done = vramguard("analyze", str(log), "--load", "clients")
    assert done.returncode == 2
    assert "no load field 'clients'" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_negative_load_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "negative.jsonl"
    with SampleLogWriter(log, source={}) as writer:
        for i in range(100):
            writer.sample(Sample(t=60.0 * i, host_rss_bytes=10**8, load=-1.0 if i == 50 else 3.0))
    done = vramguard("analyze", str(log), "--load", "load")
    assert done.returncode == 2 and "negative" in done.stderr


def test_a_constant_load_explains_nothing_and_says_so(tmp_path: Path) -> None:
    log = tmp_path / "constant.jsonl"
    trace = scenarios.draw("white", seed=2, hours=6)
    with SampleLogWriter(log, source={}) as writer:
        for t, value in zip(trace.t.tolist(), trace.values.tolist(), strict=True):
            writer.sample(Sample(t=t, host_rss_bytes=int(value), sessions_active=4))
    result = json.loads(vramguard("analyze", str(log), "--json").stdout)
    assert result["load"] == "constant" and "explains nothing" in result["reason"]


def test_a_short_log_says_how_much_longer_and_which_flag(tmp_path: Path) -> None:
    log = tmp_path / "short.jsonl"
    with SampleLogWriter(log, source={}) as writer:
        for i in range(20):
            writer.sample(Sample(t=60.0 * i, host_rss_bytes=10**8 + i))
    done = vramguard("analyze", str(log), "--window", "8h")
    assert done.returncode == 0
    assert "insufficient-data" in done.stdout and "more of samples needed" in done.stdout
    assert "--window" in done.stdout


def test_without_window_a_run_is_judged_on_its_own_scale(tmp_path: Path) -> None:
    log = tmp_path / "ten-minutes.jsonl"
    with SampleLogWriter(log, source={}) as writer:
        for i in range(600):  # ten minutes at one a second, climbing 60 MB
            writer.sample(Sample(t=float(i), host_rss_bytes=int(2e8 + i * 1e5)))
    result = json.loads(vramguard("analyze", str(log), "--json").stdout)
    assert result["verdict"] == "leak"
    assert result["time_scale"]["window_from"] == "the run's own length"
    assert result["time_scale"]["window_s"] == pytest.approx(200.0, rel=0.02)
    assert result["alarm_slope_bytes_per_hour"] is not None
    # the two growth figures are both near the truth: 60 MB in ten minutes is 360 MB/h
    assert 250 * MB < result["slope_bytes_per_hour"] < 450 * MB
    assert 250 * MB < result["alarm_slope_bytes_per_hour"] < 450 * MB


STEADY = "import time; block = b'x' * 20_000_000; time.sleep(3)"


def test_run_reads_the_load_from_a_file_and_logs_it(tmp_path: Path) -> None:
    load = tmp_path / "sessions"
    load.write_text("12\n")
    log = tmp_path / "run.jsonl"
    done = vramguard("run", "--interval", "0.1s", "--load-file", str(load), "--json", "--log",
                     str(log), "--", sys.executable, "-c", STEADY)  # fmt: skip
    result = json.loads(done.stdout)
    assert result["load_field"] == f"file {load}"
    lines = [json.loads(x) for x in log.read_text().splitlines()[1:]]
    assert any(line.get("load") == 12.0 for line in lines)
    # not a terminal: the live state is a plain line on stderr
    assert "vramguard: python" in done.stderr or "samples over" in done.stderr


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--load-file", "/nonexistent/sessions", "cannot read load file"),
        ("--load-command", "echo many", "did not give a number"),
        ("--load-command", "/nonexistent/tool", "command not found"),
        ("--load", "clients", "not a sample field"),
    ],
)
def test_a_load_source_that_gives_no_number_is_refused_before_the_run(
    option: str, value: str, message: str
) -> None:
    done = vramguard("run", option, value, "--", sys.executable, "-c", "pass")
    assert done.returncode == 2 and message in done.stderr


@pytest.mark.parametrize("command", ["run", "watch", "analyze", "soak", "churn", "probe"])
def test_exit_codes_are_in_the_help(command: str) -> None:
    text = " ".join(vramguard(command, "--help").stdout.split())  # argparse wraps lines
    assert "exit codes: 0 " in text and "2 bad input" in text
