"""A noise prior from an earlier run of the same process (`noise_from`, `analyze
--noise-from`): a young run's first hours cannot tell a slow wander from a leak; the
process's previous run can."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from vramguard.samplelog import SampleLogWriter
from vramguard.scenarios import draw
from vramguard.tracker import Sample
from vramguard.trend import DetectorConfig, LeakDetector, noise_from

HOUR = 3600.0
MB = 1e6


def _runs(seed: int = 1071) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One process (a 4.5 h wander of 8.4 MB over 2.5 MB of white noise) run twice: a
    day, then 36 h more judged on their own. (Of wander seeds 1000-1149, four still alarm
    in their first 4 h with the likelihood ratio against a wander; this is one.)"""
    trace = draw("wander", seed, hours=60.0)
    earlier = trace.t < 24 * HOUR
    later = ~earlier
    return trace.t[earlier], trace.values[earlier], trace.t[later] - 24 * HOUR, trace.values[later]


def _alarms(t: np.ndarray, v: np.ndarray, prior: object = None) -> list[float]:
    detector = LeakDetector(DetectorConfig(), noise_prior=prior)  # type: ignore[arg-type]
    detector.update_many(t, v)
    detector.flush()
    return [a.t for a in detector.alarms]


def test_an_earlier_run_keeps_a_young_run_from_calling_its_wander_a_leak() -> None:
    t0, v0, t, v = _runs()
    prior = noise_from(t0, v0)
    assert prior is not None and prior.history_buckets > 1000
    alone = _alarms(t, v)
    assert alone and alone[0] < 4 * HOUR  # alone, the run's first hours read as a leak
    assert _alarms(t, v, prior) == []


def test_with_the_prior_a_leak_is_still_found() -> None:
    t0, v0, t, v = _runs()
    start = 8 * HOUR
    leaking = v + np.maximum(t - start, 0.0) / HOUR * 10 * MB
    alarms = _alarms(t, leaking, noise_from(t0, v0))
    # on this wander even a reference told the exact noise (bench/exact_noise.py) needs
    # 5.6 h; alone (no prior) the run called its wander a leak at 2.5 h, before this one
    assert alarms and start < alarms[0] < start + 7 * HOUR


def test_a_series_too_short_to_show_its_noise_gives_none() -> None:
    t = np.arange(0.0, 600.0, 60.0)
    assert noise_from(t, np.full(len(t), 1e8)) is None


def _write(path: Path, t: np.ndarray, v: np.ndarray, field: str = "process_gpu_bytes") -> None:
    with SampleLogWriter(path, source={"test": "noise prior"}) as log:
        for ti, vi in zip(t.tolist(), v.tolist(), strict=True):
            log.sample(Sample(t=ti, wall_s=ti, **{field: int(vi)}))


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vramguard", "analyze", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_analyze_noise_from_an_earlier_log(tmp_path: Path) -> None:
    t0, v0, t, v = _runs()
    _write(tmp_path / "earlier.jsonl", t0, v0)
    _write(tmp_path / "now.jsonl", t[t < 6 * HOUR], v[t < 6 * HOUR])
    alone = _analyze(str(tmp_path / "now.jsonl"), "--json")
    assert (alone.returncode, json.loads(alone.stdout)["verdict"]) == (1, "leak")
    done = _analyze(str(tmp_path / "now.jsonl"), "--noise-from", str(tmp_path / "earlier.jsonl"),
                    "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["verdict"] == "stable"
    assert result["noise_prior"]["from"] == str(tmp_path / "earlier.jsonl")
    assert result["noise_prior"]["earlier_duration_s"] > 23 * HOUR
    # the earlier run's last stretch, as much as this scale keeps (three windows of buckets)
    buckets = (
        result["time_scale"]["window_s"]
        / DetectorConfig().scaled(result["time_scale"]["window_s"]).bucket_s
    )
    assert result["noise_prior"]["noise_buckets"] > 2.5 * buckets
    screen = _analyze(str(tmp_path / "now.jsonl"), "--noise-from", str(tmp_path / "earlier.jsonl"))
    assert "noise learned from an earlier run of 23h" in screen.stdout


def test_analyze_noise_from_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    t0, v0, t, v = _runs()
    now = tmp_path / "now.jsonl"
    _write(now, t[t < 6 * HOUR], v[t < 6 * HOUR])
    short = tmp_path / "short.jsonl"
    _write(short, t0[:10], v0[:10])
    other = tmp_path / "other.jsonl"
    _write(other, t0, v0, field="host_rss_bytes")
    for earlier, says in (
        (tmp_path / "missing.jsonl", "missing.jsonl"),
        (short, "too short to show its noise"),
        (other, "has no metric 'process_gpu_bytes'"),
    ):
        result = _analyze(str(now), "--noise-from", str(earlier))
        assert result.returncode == 2, (earlier, result.stderr)
        assert says in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    prom = _analyze("--prometheus", "http://127.0.0.1:9", "--query", "up", "--noise-from",
                    str(short))  # fmt: skip
    assert prom.returncode == 2 and "--noise-from" in prom.stderr


STEADY = "import time; block = b'x' * 20_000_000; time.sleep(4)"
FAST = ["--interval", "0.05s", "--window", "4s"]  # the detector's 8 h, scaled to 4 s


def _vramguard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vramguard", *args], capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_run_learns_from_its_own_earlier_log(tmp_path: Path) -> None:
    """The flow a service restarted daily would use: yesterday's `run --log` is today's
    `--noise-from`, given to the live detector and to the verdict."""
    earlier = tmp_path / "earlier.jsonl"
    first = _vramguard("run", *FAST, "--log", str(earlier), "--json", "--", sys.executable,
                       "-c", STEADY)  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["noise_prior"] is None
    again = _vramguard("run", *FAST, "--noise-from", str(earlier), "--json", "--",
                       sys.executable, "-c", STEADY)  # fmt: skip
    assert again.returncode == 0, again.stderr
    prior = json.loads(again.stdout)["noise_prior"]
    assert prior["from"] == str(earlier) and prior["metric"] == "host_rss_bytes"
    assert prior["noise_buckets"] >= 20 and prior["earlier_duration_s"] > 3.0


def test_run_with_an_unusable_earlier_log_starts_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    result = _vramguard("run", "--noise-from", str(tmp_path / "missing.jsonl"), "--",
                        sys.executable, "-c", f"open({str(marker)!r}, 'w')")  # fmt: skip
    assert result.returncode == 2 and "missing.jsonl" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not marker.exists()


def test_a_metric_the_earlier_log_lacks_is_said_and_the_run_judged_without_it(
    tmp_path: Path,
) -> None:
    """Known only once the run has settled on its metric: hours of samples are not thrown
    away for it. The earlier log has GPU memory; this machine's run judges host RSS."""
    t0, v0, _, _ = _runs()
    gpu_only = tmp_path / "gpu.jsonl"
    _write(gpu_only, t0, v0)
    for command in (
        ["run", *FAST, "--noise-from", str(gpu_only), "--json", "--", sys.executable, "-c",
         "import time; time.sleep(1.5)"],
        ["watch", *FAST, "--count", "10", "--pid", str(os.getpid()), "--noise-from",
         str(gpu_only), "--json"],
    ):  # fmt: skip
        result = _vramguard(*command)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["noise_prior"] is None
        warnings = [line for line in result.stderr.splitlines() if "--noise-from" in line]
        # said for the live alerts and for the verdict, each once
        assert len(warnings) == 2, warnings
        assert all("has no metric 'host_rss_bytes'" in line for line in warnings)
        assert warnings[1].endswith("the verdict without it")


def test_with_a_prior_the_likelihood_ratio_against_a_wander_is_not_asked() -> None:
    # the earlier run has shown the wander; the second opinion that stands in for it (a
    # wander fitted to the run's own history) would only delay the alarm
    t0, v0, t, v = _runs()
    leaking = v + np.maximum(t - 8 * HOUR, 0.0) / HOUR * 10 * MB
    alone = LeakDetector(DetectorConfig())
    alone.update_many(t, leaking)
    with_prior = LeakDetector(DetectorConfig(), noise_prior=noise_from(t0, v0))
    with_prior.update_many(t, leaking)
    assert alone.alarms and "against a wander" in alone.alarms[0].reason
    assert with_prior.alarms and "against a wander" not in with_prior.alarms[0].reason
