"""`vramguard soak` and `churn` on real encoders, at small sizes so CI runs them in seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from vramguard.samplelog import read_log
from vramguard.soak import LEAK_SEAM_ENV
from waiting import wait_for_lines

SMALL = ("--resolution", "320x240", "--fps", "30")


def vramguard(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vramguard", *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_a_short_managed_soak_passes_and_leaves_a_complete_log(tmp_path: Path) -> None:
    log = tmp_path / "soak.jsonl"
    result = vramguard("soak", *SMALL, "--duration", "40s", "--bitrate-ladder", "1000,2000,3000",
                       "--adapt-every", "1.5s", "--reconnect-every", "10s", "--log", str(log),
                       "--json")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["verdict"] == "pass"
    assert document["frames_encoded"] == 1200 and document["stream_s"] == 40
    assert document["session_reuse_rate"] >= 0.85
    assert document["sessions_created"] == 1  # one per client: libx264 changes rate in place
    assert document["adapted_in_place"] == document["rate_changes"] > 0
    assert document["rate_change_keyframes"] == 0
    assert document["frames_dropped_memory"] == 0
    assert 0 < document["reference_peak_bytes"] < 50 * 10**6
    written = read_log(log)
    assert written.header["config"]["ladder_kbps"] == [1000, 2000, 3000]
    assert len(written.samples) == document["samples"]
    # one every 0.25 s of stream; one asked for while the last was still being read is
    # skipped (the encoder never waits on a probe)
    assert document["samples"] + document["samples_skipped"] == 160
    assert written.samples[-1].frames_encoded is not None
    assert written.result is not None and written.result["verdict"] == "pass"
    assert any(e["event"] == "after_teardown" for e in written.events)


def test_the_baseline_reproduces_the_plans_before_picture() -> None:
    churn = ("--bitrate-ladder", "1000,2000", "--adapt-every", "2s", "--reconnect-every", "5s")
    result = vramguard("soak", *SMALL, "--duration", "20s", *churn, "--baseline", "--json")
    document = json.loads(result.stdout)
    assert document["session_reuse_rate"] == 0.0
    assert document["sessions_created"] >= 12
    assert document["rate_change_keyframes"] > 0  # each new encoder starts with an IDR
    assert result.returncode == 1  # reuse under 85% misses the criterion
    assert not next(c for c in document["criteria"] if c["name"] == "session reuse")["passed"]


def test_an_injected_leak_fails_the_soak_and_is_named(tmp_path: Path) -> None:
    result = vramguard("soak", *SMALL, "--duration", "20s", "--json",
                       env={LEAK_SEAM_ENV: "100000"})  # fmt: skip
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["verdict"] == "fail"
    assert document["leak_verdict"] == "leak"
    assert document["likely_source"] == "unaccounted"  # none of our pools holds it
    failed = [c["name"] for c in document["criteria"] if not c["passed"]]
    assert failed == ["growth per hour"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_soak_leaves_a_valid_log_and_a_result(
    tmp_path: Path, sig: signal.Signals
) -> None:
    log = tmp_path / "stopped.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vramguard", "soak", *SMALL, "--duration", "2h", "--log",
         str(log), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for_lines(log, 50, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    document = json.loads(out)
    assert document["interrupted"] == sig.name
    written = read_log(log)
    assert written.warnings == []
    assert written.result is not None and written.result["interrupted"] == sig.name
    assert written.result["frames_encoded"] > 0 and len(written.samples) >= 49


def test_after_kill_9_the_soak_log_reads_up_to_its_last_whole_sample(tmp_path: Path) -> None:
    log = tmp_path / "killed.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vramguard", "soak", *SMALL, "--duration", "2h", "--log",
         str(log)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_lines(log, 30, proc)
    proc.kill()
    proc.wait(timeout=30)
    raw = log.read_bytes()
    whole = raw[: raw.rfind(b"\n") + 1].decode().splitlines()
    written = read_log(log)
    assert written.result is None
    assert len(written.samples) == sum(1 for line in whole[1:] if '"wall_s"' in line)
    assert len(written.samples) >= 29
    assert len(written.warnings) <= 1  # at most the line being written, torn


def test_the_plans_flag_names_are_accepted(tmp_path: Path) -> None:
    log = tmp_path / "plan.jsonl"
    result = vramguard("soak", *SMALL, "--duration", "5s", "--log-gpu-memory", str(log),
                       "--gpu-memory-sample-interval", "0.5s", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    # ten asked for (5 s every 0.5 s); under load a reading still in flight skips one, and
    # the result counts it
    skipped = json.loads(result.stdout)["samples_skipped"]
    assert len(read_log(log).samples) + skipped == 10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--codec", "vp9"), "invalid choice: 'vp9'"),
        (("--resolution", "1920x"), "invalid resolution '1920x'"),
        (("--resolution", "0x0"), "invalid resolution '0x0'"),
        (("--resolution", "321x241"), "is odd"),
        (("--bitrate", "0"), "invalid number '0'"),
        (("--bitrate", "-5"), "invalid number '-5'"),
        (("--bitrate", "fast"), "invalid number 'fast'"),
        (("--duration", "0"), "must be greater than zero"),
        (("--duration=-1h",), "invalid duration '-1h'"),
        (("--duration", "forever"), "invalid duration 'forever'"),
        (("--bitrate-ladder", "2000,abc"), "invalid ladder '2000,abc'"),
        (("--bitrate-ladder", "2000,,5000"), "invalid ladder"),
        (("--adapt-every", "30s"), "--adapt-every needs --bitrate-ladder"),
        (("--log", "/no/such/folder/soak.jsonl"), "folder /no/such/folder does not exist"),
        (("--encoder", "libfoo"), "unknown encoder 'libfoo'"),
    ],
)
def test_bad_soak_input_is_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    result = vramguard("soak", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_an_existing_log_is_not_overwritten_without_force(tmp_path: Path) -> None:
    log = tmp_path / "keep.jsonl"
    log.write_text("a day of samples\n")
    result = vramguard("soak", *SMALL, "--duration", "1s", "--log", str(log))
    assert result.returncode == 2 and "use --force" in result.stderr
    assert log.read_text() == "a day of samples\n"


def test_a_30_cycle_churn_passes() -> None:
    result = vramguard("churn", "--cycles", "30", "--resolution", "320x240", "--json")
    assert result.returncode == 0, result.stdout
    document = json.loads(result.stdout)
    assert document["verdict"] == "stable"
    assert {"host_rss_bytes", "heap_in_use_bytes", "open_handles", "threads"} <= set(
        document["metrics"]
    )


def test_an_injected_leak_fails_the_churn_and_is_named() -> None:
    result = vramguard("churn", "--cycles", "20", "--resolution", "320x240", "--json",
                       env={LEAK_SEAM_ENV: "20000"})  # fmt: skip
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert "host_rss_bytes" in document["leaking"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--cycles", "0"), "invalid number '0'"),
        (("--cycles", "2"), "at least 4"),
        (("--resolution", "7x7"), "width must be"),
    ],
)
def test_bad_churn_input_is_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    result = vramguard("churn", *args)
    assert result.returncode == 2 and message in result.stderr


MEMCHECK = """==4242== 1,024 bytes in 1 blocks are definitely lost in loss record 10 of 20
==4242==    at 0x48407B4: malloc (vg_replace_malloc.c:381)
==4242==    by 0x6A1B2C3: x264_8_frame_new (in /usr/lib/libx264.so.164)
==4242==
==4242== 56 bytes in 1 blocks are definitely lost in loss record 2 of 20
==4242==    at 0x48407B4: malloc (vg_replace_malloc.c:381)
==4242==    by 0x4A2B3C: PyObject_Malloc (in /usr/bin/python3.11)
==4242==
==4242== LEAK SUMMARY:
==4242==    definitely lost: 1,080 bytes in 2 blocks
"""


def test_memcheck_reports_are_read_and_encoder_leaks_picked_out() -> None:
    from vramguard.churn import parse_memcheck

    report = parse_memcheck(MEMCHECK)
    assert report["definitely_lost_bytes"] == 1080 and report["records"] == 2
    assert report["encoder_records"] == [{"bytes": 1024, "libraries": ["libx264"]}]
    assert report["completed"]


@pytest.mark.skipif(__import__("shutil").which("valgrind") is None, reason="valgrind not installed")
def test_churn_under_valgrind_finds_no_definite_leak_in_the_encoders() -> None:
    result = vramguard("churn", "--valgrind", "--cycles", "4", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["completed"] and report["returncode"] == 0
    assert report["encoder_lost_bytes"] == 0


def test_the_soak_writes_its_html_report_and_never_overwrites_one(tmp_path: Path) -> None:
    page = tmp_path / "soak.html"
    result = vramguard("soak", *SMALL, "--duration", "5s", "--html", str(page))
    assert result.returncode == 0, result.stderr
    html = page.read_text()
    assert "data:image/png;base64," in html and "peak memory" in html
    again = vramguard("soak", *SMALL, "--duration", "5s", "--html", str(page))
    assert again.returncode == 2 and "use --force" in again.stderr
    assert page.read_text() == html
