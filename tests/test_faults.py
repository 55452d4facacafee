"""Faults injected at the vendor-call seams: each run goes on or stops cleanly, as documented in
docs/reliability.md; the log stays valid; nothing leaks; each fault is reported once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vramguard import faults
from vramguard.encode import EncoderConfig
from vramguard.encode.backends import SOFTWARE
from vramguard.monitor import Monitor
from vramguard.pipelines import ManagedPipeline
from vramguard.pools.staging import StagingAllocationFailed, StagingPool
from vramguard.samplelog import LogError, SampleLogWriter, read_log
from vramguard.soak import Criteria, SoakConfig, SoakRunner
from vramguard.tracker import MemoryTracker


@pytest.fixture
def inject() -> Iterator[Any]:
    """Install a fault spec for one test; always removed (and hung seams let go) after."""
    yield faults.install
    faults.release_hangs()
    faults.install(None)


def soak(
    tmp_path: Path, seconds: float = 8.0, codec: str = "h264", **overrides: Any
) -> tuple[dict[str, Any], SoakRunner, list[tuple[str, str]], Path]:
    """A small managed soak with a ladder and reconnects, logged; returns the result, the
    runner, what on_fault heard and the log's path. libx264 changes rate in place (one
    session throughout); av1 (libsvtav1) cannot, so each rate change opens a session."""
    config = SoakConfig(
        EncoderConfig(codec, 320, 240, 30, 500, encoder=SOFTWARE[codec]),
        duration_s=seconds, ladder_kbps=(300, 500, 800), adapt_every_s=1.0,
        reconnect_every_s=3.0, criteria=Criteria(min_reuse_rate=0.0), **overrides,
    )  # fmt: skip
    heard: list[tuple[str, str]] = []
    path = tmp_path / "soak.jsonl"
    log = SampleLogWriter(path)
    runner = SoakRunner(config, log, on_fault=lambda kind, msg: heard.append((kind, msg)))
    try:
        result = runner.run().as_dict()
        log.result(result)
    finally:
        log.close()
    return result, runner, heard, path


def fault_events(path: Path) -> list[dict[str, Any]]:
    written = read_log(path)
    assert written.warnings == []  # whole lines only
    return [e for e in written.events if e.get("event") == "fault"]


def vramguard(spec: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m vramguard ARGS` in a child process with the faults of `spec` installed."""
    env = {**os.environ, faults.FAULTS_ENV: spec} if spec else dict(os.environ)
    return subprocess.run([sys.executable, "-m", "vramguard", *args], capture_output=True,
                          text=True, timeout=120, env=env)  # fmt: skip


def managed(runner: SoakRunner) -> ManagedPipeline:
    assert isinstance(runner.pipeline, ManagedPipeline)
    return runner.pipeline


def nothing_leaked(runner: SoakRunner) -> None:
    assert managed(runner).pool.stats().in_use == 0 and managed(runner).pool.stats().idle == 0
    assert managed(runner).staging.stats().in_use_bytes == 0
    assert managed(runner).staging.stats().buffers == 0
    assert faults.open_sessions() == 0  # every encoder opened was closed


@pytest.mark.parametrize("prefetch", [False, True], ids=["drawn-in-line", "drawn-ahead"])
def test_an_encoder_that_raises_is_replaced_and_the_run_goes_on(
    tmp_path: Path, inject: Any, prefetch: bool
) -> None:
    inject("encode@100*2")  # frame 100 fails, and the first frame of its replacement too
    result, runner, heard, path = soak(tmp_path, prefetch=prefetch)
    assert result["failure"] is None and result["frames_dropped_error"] == 2
    assert result["frames_encoded"] == 8 * 30 - 2
    assert result["faults"]["encoder"]["count"] == 2
    assert managed(runner).pool.stats().invalidated == 2  # the failed sessions never came back
    assert [kind for kind, _ in heard] == ["encoder"]  # reported once
    assert [e["kind"] for e in fault_events(path)] == ["encoder"]
    assert "device lost" in heard[0][1]
    nothing_leaked(runner)


def test_an_encoder_failing_for_good_ends_the_run_with_a_result(tmp_path: Path) -> None:
    log = tmp_path / "failed.jsonl"
    proc = vramguard("encode@50+", "soak", "--resolution", "320x240", "--fps", "30",
                     "--duration", "20s", "--log", str(log), "--json")  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    document = json.loads(proc.stdout)
    assert document["failure"].startswith("the encoder failed 3 times in a row")
    assert document["frames_encoded"] == 49 and document["frames_dropped_error"] == 3
    missed = [c["name"] for c in document["criteria"] if not c["passed"]]
    assert "run completed" in missed
    assert proc.stderr.count("encoder fault") == 1 and proc.stderr.count("fatal fault") == 1
    written = read_log(log)
    assert written.warnings == [] and written.result is not None
    assert written.result["failure"] == document["failure"]


def test_a_hardware_session_cap_is_survived_by_closing_idle_sessions(
    tmp_path: Path, inject: Any
) -> None:
    inject("open-cap=2")  # a warm session per rung would need 3 or more
    result, runner, heard, path = soak(tmp_path, codec="av1", max_idle_bytes=10**12)
    assert result["failure"] is None and result["frames_dropped_error"] == 0
    assert result["frames_encoded"] == 8 * 30
    assert managed(runner).pool.stats().open_failures >= 1
    assert [kind for kind, _ in heard] == ["open"]
    assert "idle sessions" in heard[0][1] and "cap" in heard[0][1]
    assert len(fault_events(path)) == 1
    nothing_leaked(runner)


def test_an_open_that_keeps_failing_ends_the_run_cleanly(tmp_path: Path, inject: Any) -> None:
    inject("open@3+")  # the probe open and the first session work; the next never does
    result, runner, heard, path = soak(tmp_path, codec="av1")
    assert result["failure"] is not None and "cannot go on encoding" in result["failure"]
    assert result["verdict"] == "fail"
    assert result["frames_encoded"] == 30  # up to the first bitrate change, at 1 s
    assert [kind for kind, _ in heard] == ["fatal"]
    assert read_log(path).result is not None
    nothing_leaked(runner)


@pytest.mark.parametrize("prefetch", [False, True], ids=["drawn-in-line", "drawn-ahead"])
def test_a_staging_allocation_that_fails_twice_drops_one_frame(
    tmp_path: Path, inject: Any, prefetch: bool
) -> None:
    inject("staging@1*2")  # the retry after freeing idle buffers fails too
    result, runner, heard, _ = soak(tmp_path, prefetch=prefetch)
    assert result["frames_dropped_memory"] == 1 and result["failure"] is None
    assert result["frames_encoded"] == 8 * 30 - 1
    missed = [c["name"] for c in result["criteria"] if not c["passed"]]
    assert missed == ["frames dropped for memory"]
    assert [kind for kind, _ in heard] == ["staging"]
    assert "cudaMalloc" in heard[0][1]
    nothing_leaked(runner)


def test_a_staging_allocation_that_fails_once_is_retried_after_a_purge(inject: Any) -> None:
    pool = StagingPool(10 * 64 * 64 * 3 // 2, trim_heap_after_free=False)
    held = [pool.acquire(64, 64) for _ in range(2)]
    held[0].release()  # one idle buffer to free when memory runs out
    inject("staging@1")
    lease = pool.acquire(64, 48)  # another size class: needs a new buffer
    assert pool.stats().allocation_failures == 1 and pool.stats().purges == 1
    lease.release()
    held[1].release()
    inject("staging@1*2")
    with pytest.raises(StagingAllocationFailed, match=r"64x32 yuv420p.*cudaMalloc"):
        pool.acquire(64, 32)
    assert pool.stats().in_use_bytes == 0
    pool.close()
    assert pool.stats().buffers == 0


def test_a_probe_that_raises_costs_one_sample(tmp_path: Path, inject: Any) -> None:
    inject("probe@3")
    result, runner, heard, path = soak(tmp_path)
    assert result["failure"] is None and result["frames_encoded"] == 8 * 30
    assert [kind for kind, _ in heard] == ["probe"]
    written = read_log(path)
    assert len(written.samples) == result["samples"]
    # one asked for every 0.25 s of 8 s: each taken, skipped (the last still in flight) or
    # lost to the fault, only the one
    assert result["samples"] + result["samples_skipped"] == 32 - 1
    nothing_leaked(runner)


def test_a_hung_probe_never_stalls_encoding(tmp_path: Path, inject: Any) -> None:
    inject("probe-hang@3")  # the third reading never returns (until the test ends)
    result, runner, heard, path = soak(tmp_path, probe_time_limit_s=0.3)
    assert result["failure"] is None
    assert result["frames_encoded"] == 8 * 30  # every frame, while the probe hung
    assert heard and heard[0][0] == "probe" and "longer than 0.3 s" in heard[0][1]
    assert len(heard) == 1
    assert result["samples"] == 2  # the two readings before it
    assert read_log(path).result is not None
    nothing_leaked(runner)


def test_monitor_skips_a_hung_reading_and_samples_again_once_it_returns(inject: Any) -> None:
    heard: list[str] = []
    monitor = Monitor(os.getpid(), MemoryTracker(), time_limit_s=0.2,
                      on_fault=lambda kind, _msg: heard.append(kind))  # fmt: skip
    try:
        inject("probe-hang@2")
        assert monitor.sample() is not None
        assert monitor.sample() is None  # hung: given up after the time limit
        assert monitor.sample() is None  # still hung: no second reading piles up
        faults.release_hangs()
        assert monitor.recorder.sampler.wait_idle(timeout_s=5.0)
        assert monitor.sample() is not None
    finally:
        monitor.close()
    assert heard == ["probe"] and monitor.faults["probe"]["count"] == 2


def test_a_log_write_that_fails_half_way_is_cut_back_to_its_last_whole_line(
    tmp_path: Path, inject: Any
) -> None:
    path = tmp_path / "full.jsonl"
    inject("log@3")
    log = SampleLogWriter(path)
    log.write({"t": 0.0, "wall_s": 0.0, "host_rss_bytes": 1})
    with pytest.raises(LogError, match="No space left on device; the log is kept valid up to"):
        log.write({"t": 1.0, "wall_s": 1.0, "host_rss_bytes": 2})
    log.write({"t": 2.0, "wall_s": 2.0, "host_rss_bytes": 3})  # dropped, not raised again
    log.close()
    assert log.dropped == 2
    written = read_log(path)
    assert written.warnings == [] and [s.t for s in written.samples] == [0.0]


def test_a_full_disk_under_a_soak_keeps_the_run_and_a_valid_log(
    tmp_path: Path, inject: Any
) -> None:
    inject("log@6")
    result, runner, heard, path = soak(tmp_path)
    assert result["failure"] is None and result["frames_encoded"] == 8 * 30
    assert result["log_error"] is not None and "No space left" in result["log_error"]
    assert [kind for kind, _ in heard] == ["log"]
    written = read_log(path)
    assert written.warnings == [] and len(written.samples) == 4  # header, then 4 samples
    nothing_leaked(runner)


def test_a_log_on_a_device_that_is_full_is_one_line_and_exit_2() -> None:
    proc = vramguard(None, "soak", "--resolution", "320x240", "--duration", "1s", "--log",
                     "/dev/full", "--force")  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "vramguard: error: cannot write /dev/full: No space left on device"
    )


def test_a_bad_fault_spec_names_the_item() -> None:
    with pytest.raises(ValueError, match="bad fault 'encode@x'"):
        faults.parse("encode@x")
    with pytest.raises(ValueError, match="sites are"):
        faults.parse("gpu@1")


def test_an_encoder_failing_mid_churn_ends_it_with_a_result(tmp_path: Path) -> None:
    log = tmp_path / "churn.jsonl"
    # six encodes a cycle: the 50th is in the ninth
    proc = vramguard("encode@50", "churn", "--resolution", "64x64", "--frames", "2",
                     "--cycles", "20", "--log", str(log), "--json")  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("fatal fault") == 1
    document = json.loads(proc.stdout)
    assert document["failure"].startswith("cycle 8: ") and document["cycles"] == 8
    written = read_log(log)
    assert written.warnings == [] and written.result == document


def test_a_probe_failing_mid_churn_costs_one_sample() -> None:
    proc = vramguard("probe@5", "churn", "--resolution", "64x64", "--frames", "2",
                     "--cycles", "12", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert document["cycles"] == 11 and document["faults"]["probe"]["count"] == 1
    assert proc.stderr.count("probe fault") == 1
