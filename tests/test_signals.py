"""SIGINT and SIGTERM during churn and run: a result and a complete log; run's command is
terminated, killed when it will not go, and always reaped. (The soak's are in
test_soak_churn.py.)"""

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
from waiting import wait_for_lines, wait_for_pid


def run_stubborn_child(
    tmp_path: Path, ignored: str, *options: str
) -> tuple[subprocess.Popen[str], int]:
    """`vramguard run OPTIONS -- a python child that ignores `ignored``; returns vramguard's
    process and the child's pid once the child is up."""
    marker = tmp_path / "child.pid"
    child_code = (
        f"import os, signal, time; signal.signal(signal.{ignored}, signal.SIG_IGN); "
        f"open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "vramguard", "run", "--interval", "0.1s", *options, "--",
         sys.executable, "-c", child_code],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return proc, wait_for_pid(marker, proc)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_churn_gives_a_result_and_a_complete_log(
    tmp_path: Path, sig: signal.Signals
) -> None:
    log = tmp_path / "churn.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vramguard", "churn", "--resolution", "64x64", "--frames", "2",
         "--cycles", "100000", "--log", str(log), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for_lines(log, 6, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    document = json.loads(out)
    assert document["interrupted"] == sig.name and document["cycles"] >= 5
    written = read_log(log)
    assert written.warnings == [] and written.result == document
    assert len(written.samples) == document["cycles"]


def test_run_kills_a_command_that_ignores_sigterm_and_reaps_it(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    proc, child_pid = run_stubborn_child(
        tmp_path, "SIGTERM", "--kill-after", "1s", "--log", str(log), "--json"
    )
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGKILL, err
    assert "did not exit within 1s of SIGTERM: killed" in err
    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)  # killed and reaped, not a zombie of ours
    assert json.loads(out)["returncode"] == -signal.SIGKILL
    written = read_log(log)
    assert written.warnings == [] and written.result is not None


def test_a_second_signal_kills_the_command_at_once(tmp_path: Path) -> None:
    proc, _ = run_stubborn_child(tmp_path, "SIGINT", "--kill-after", "1h")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None  # the command ignores SIGINT; vramguard waits for it
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGKILL, err
