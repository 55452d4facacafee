"""`vramguard run` and `watch` on real child processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vramguard.samplelog import read_log
from waiting import wait_for_pid

LEAKY = """
import sys, time
held = []
for _ in range(int(sys.argv[1])):
    held.append(b"x" * 1_000_000)  # bytes are written, so the pages are resident
    time.sleep(0.02)
"""
STEADY = "import time; block = b'x' * 20_000_000; time.sleep(4)"
FAST = ["--interval", "0.05s", "--window", "4s"]  # the detector's 8 h, scaled to 4 s


def vramguard(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vramguard", *args], capture_output=True, text=True, timeout=timeout
    )


def test_run_finds_a_child_that_leaks_on_purpose(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    result = vramguard(
        "run", *FAST, "--json", "--log", str(log), "--", sys.executable, "-c", LEAKY, "250"
    )
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert document["verdict"] == "leak"
    assert document["metric"] == "host_rss_bytes"
    assert document["returncode"] == 0
    assert "leak alert" in result.stderr
    written = read_log(log)
    assert written.result is not None and written.result["verdict"] == "leak"
    assert any(e["event"] == "leak_alert" for e in written.events)
    assert len(written.samples) >= 40
    # wall_s is seconds since the start (docs/log-format.md), not an epoch time
    first, last = written.samples[0], written.samples[-1]
    assert first.wall_s == 0.0 and last.wall_s is not None and 0 < last.wall_s < 600


def test_run_passes_a_child_that_does_not_leak() -> None:
    result = vramguard("run", *FAST, "--json", "--", sys.executable, "-c", STEADY)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["verdict"] == "stable"


def test_run_returns_the_childs_own_failure() -> None:
    result = vramguard(
        "run", "--interval", "0.1s", "--", sys.executable, "-c", "raise SystemExit(3)"
    )
    assert result.returncode == 3
    assert "exited with 3" in result.stderr


def test_run_starts_no_shell() -> None:
    result = vramguard("run", "--interval", "0.1s", "--", "echo hi; exit 4")
    assert result.returncode == 2
    assert result.stderr.strip() == "vramguard: error: command not found: echo hi; exit 4"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "run needs a command"),
        (("--", "/definitely/not/here"), "command not found: /definitely/not/here"),
        (("--interval", "0s", "--", "true"), "must be greater than zero"),
        (("--interval", "soon", "--", "true"), "invalid duration 'soon'"),
    ],
)
def test_run_bad_input_is_one_line_exit_2(args: tuple[str, ...], message: str) -> None:
    result = vramguard("run", *args)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_run_refuses_to_overwrite_a_log(tmp_path: Path) -> None:
    log = tmp_path / "keep.jsonl"
    log.write_text("keep me")
    result = vramguard("run", "--log", str(log), "--", sys.executable, "-c", "pass")
    assert result.returncode == 2 and "use --force" in result.stderr
    assert log.read_text() == "keep me"


def test_sigterm_is_forwarded_and_the_child_reaped(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    child_code = (
        f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "vramguard", "run", "--interval", "0.1s", "--log",
         str(tmp_path / "t.jsonl"), "--", sys.executable, "-c", child_code],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    child_pid = wait_for_pid(marker, proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)  # terminated and reaped, not a zombie of ours
    log = read_log(tmp_path / "t.jsonl")
    assert log.result is not None and log.result["returncode"] == -signal.SIGTERM


def test_watch_a_process_for_a_few_samples(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        log = str(tmp_path / "w.jsonl")
        args = ("--interval", "0.05s", "--count", "5", "--json", "--log", log)
        result = vramguard("watch", "--pid", str(sleeper.pid), *args)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["pid"] == sleeper.pid and document["samples"] == 5
    assert len(read_log(tmp_path / "w.jsonl").samples) == 5


def test_watch_a_missing_process_is_exit_2() -> None:
    result = vramguard("watch", "--pid", "4194001", "--count", "1")
    assert result.returncode == 2
    assert result.stderr.strip() == "vramguard: error: no process with pid 4194001"
