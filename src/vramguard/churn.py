"""The churn test: create, use and destroy encoder sessions many times; memory must come back.

Each cycle does the three things streaming hosts do over and over: open a session, encode a
few frames, drain and close it; a client reconnect through the session pool; and a bitrate
change through the pool. After each cycle the process is sampled: RSS, heap in use, open
descriptors (or handles), threads, and GPU memory where a probe has it. The verdict comes
from the growth per cycle of each, after a warm-up: a least-squares slope whose 95% interval
lies wholly above the allowance is a leak.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import av
import numpy as np

from vramguard import probes
from vramguard.encode import EncoderConfig, EncoderError, EncoderUnavailable, open_encoder
from vramguard.fields import PROBE_FIELDS
from vramguard.heap import trim_heap
from vramguard.pools.sessions import PoolError, SessionPool, SessionPoolStats
from vramguard.probes import Reading
from vramguard.recorder import Recorder
from vramguard.samplelog import SampleLogWriter
from vramguard.sources import SyntheticSource

#: growth per cycle allowed before it counts as a leak, by metric
ALLOWANCE_PER_CYCLE = {
    "host_rss_bytes": 256 * 1024,
    "heap_in_use_bytes": 64 * 1024,
    "open_handles": 0.2,
    "threads": 0.2,
    "process_gpu_bytes": 256 * 1024,
}


@dataclass(frozen=True, slots=True)
class ChurnConfig:
    encoder: EncoderConfig
    cycles: int = 30
    frames_per_cycle: int = 10
    warmup_cycles: int | None = None  # default: a fifth of the cycles, at least 3

    @property
    def warmup(self) -> int:
        if self.warmup_cycles is not None:
            return self.warmup_cycles
        return max(3, self.cycles // 5)


def growth_per_cycle(values: list[float]) -> tuple[float, float, float] | None:
    """(slope, low, high) of a least-squares line through values per cycle, 95% interval."""
    y = np.asarray(values, dtype=np.float64)
    n = len(y)
    if n < 4:
        return None
    x = np.arange(n, dtype=np.float64)
    xc = x - x.mean()
    slope = float(xc @ (y - y.mean())) / float(xc @ xc)
    residuals = y - y.mean() - slope * xc
    stderr = math.sqrt(float(residuals @ residuals) / (n - 2) / float(xc @ xc))
    return slope, slope - 2.0 * stderr, slope + 2.0 * stderr


class ChurnRunner:
    """Runs the cycles; `stop()` (from a signal handler, say) ends it after the cycle in
    progress, with a result. With a `log`, each cycle's sample is a log line (`cycle` beside
    the sample's fields). Teardown: the cycle's session is closed, the pool closed, then the
    caller writes the result and closes the log."""

    def __init__(
        self,
        config: ChurnConfig,
        on_cycle: Callable[[int, dict[str, Any]], None] | None = None,
        log: SampleLogWriter | None = None,
        on_fault: Callable[[str, str], None] | None = None,
        leak_bytes_per_frame: int = 0,  # test seam: bytes kept per frame (a leak on cue)
        read: Callable[[], Reading] = probes.read,  # a probe reading of this process
    ) -> None:
        self.config = config
        self.on_cycle = on_cycle
        self.log = log
        self.stop_reason: str | None = None
        self.failure: str | None = None  # the encoder error that ended it early
        # no tracker: the churn judges growth per cycle itself (see result())
        self.recorder = Recorder(read, None, log, on_fault=on_fault)
        self.reports = self.recorder.reports
        self._stop = threading.Event()
        self._started = time.monotonic()
        self.samples: list[dict[str, Any]] = []
        self._leak = leak_bytes_per_frame
        self._kept: list[bytes] = []
        enc = config.encoder
        self.source = SyntheticSource(enc.width, enc.height)
        self._frame = av.VideoFrame(enc.width, enc.height, "yuv420p")
        self._image = np.empty((enc.height * 3 // 2, enc.width), np.uint8)
        self.encoder_name: str | None = None

    def _encode(self, session: Any, start: int) -> None:
        for i in range(start, start + self.config.frames_per_cycle):
            self.source.draw(self._image, i)
            session.encode(av.VideoFrame.from_ndarray(self._image, format="yuv420p"))
            if self._leak:
                self._kept.append(b"\x01" * self._leak)
        session.drain()

    def stop(self, reason: str = "stopped") -> None:
        self.stop_reason = reason
        self._stop.set()

    def run(self) -> dict[str, Any]:
        enc = self.config.encoder
        ladder = (enc.bitrate_kbps, max(1, enc.bitrate_kbps // 2))
        ceiling = replace(enc, max_bitrate_kbps=max(*ladder, enc.ceiling_kbps))
        pool = SessionPool(open_encoder, max_idle=len(ladder) + 1)
        try:
            for cycle in range(self.config.cycles):
                if self._stop.is_set():
                    break
                try:
                    self._cycle(cycle, pool, ceiling, ladder[cycle % 2])
                except (EncoderError, EncoderUnavailable, PoolError) as exc:
                    if cycle == 0:
                        raise  # nothing was measured: the encoder is not usable here
                    self.failure = f"cycle {cycle}: {exc}"
                    self.reports.fault("fatal", self.failure, time.monotonic() - self._started)
                    break
                self._sample(cycle)
        finally:
            pool.close()
            self.recorder.close()
        return self.result(pool.stats())

    def _cycle(self, cycle: int, pool: SessionPool, ceiling: EncoderConfig, kbps: int) -> None:
        """Open, encode, drain and close; a reconnect; a bitrate change (the session of each
        step closed or returned even when the encoder fails)."""
        frame = 3 * cycle * self.config.frames_per_cycle
        session = open_encoder(ceiling)
        try:
            self.encoder_name = session.encoder
            self._encode(session, frame)
        finally:
            session.close()
        trim_heap()
        with pool.acquire(ceiling) as lease:  # a client reconnects
            self._encode(lease.session, frame + self.config.frames_per_cycle)
        with pool.acquire(ceiling.with_bitrate(kbps)) as lease:  # a bitrate change
            self._encode(lease.session, frame + 2 * self.config.frames_per_cycle)

    def _sample(self, cycle: int) -> None:
        """The process after a cycle, through the Recorder (its time limit, its faults: a
        probe failing costs this cycle's sample, not the churn; a log that fails is a fault)."""
        elapsed = time.monotonic() - self._started
        sample = self.recorder.take(elapsed, elapsed, extra={"cycle": cycle})
        if sample is None:
            return
        measured = sample.as_dict()
        row = {"cycle": cycle, **{k: measured[k] for k in PROBE_FIELDS if k in measured}}
        self.samples.append(row)
        if self.on_cycle is not None:
            self.on_cycle(cycle, row)

    def result(self, pool_stats: SessionPoolStats) -> dict[str, Any]:
        judged = self.samples[self.config.warmup :]
        metrics: dict[str, Any] = {}
        for name, allowance in ALLOWANCE_PER_CYCLE.items():
            values = [row[name] for row in judged if name in row]
            if len(values) < len(judged) or not values:
                continue
            fit = growth_per_cycle(values)
            if fit is None:
                continue
            slope, low, high = fit
            metrics[name] = {
                "growth_per_cycle": slope,
                "ci": [low, high],
                "allowance_per_cycle": allowance,
                "first": values[0],
                "last": values[-1],
                "leak": low > allowance,
            }
        leaks = [name for name, m in metrics.items() if m["leak"]]
        enough = len(judged) >= 4
        verdict = "insufficient-data" if not enough else ("leak" if leaks else "stable")
        return {
            "verdict": verdict,
            "leaking": leaks,
            "codec": self.config.encoder.codec,
            "encoder": self.encoder_name,
            "cycles": len(self.samples),
            "warmup_cycles": self.config.warmup,
            "metrics": metrics,
            "sessions_created": pool_stats.created + len(self.samples),
            "pool_reuse_rate": pool_stats.reuse_rate,
            "interrupted": self.stop_reason,
            "failure": self.failure,
            "faults": self.reports.faults,
            "log_error": self.log.error if self.log is not None else None,
        }


_DEFINITE = re.compile(r"definitely lost: ([\d,]+) bytes in ([\d,]+) blocks")
_RECORD = re.compile(r"([\d,]+) bytes in ([\d,]+) blocks are definitely lost")
ENCODER_LIBRARIES = ("libx264", "libx265", "libSvtAv1", "libavcodec", "libavutil", "libdav1d")


def valgrind_churn(codec: str, cycles: int = 3, resolution: str = "64x64") -> dict[str, Any]:
    """A short churn under valgrind memcheck: definite leaks, and those in encoder libraries."""
    if shutil.which("valgrind") is None:
        raise FileNotFoundError("valgrind is not installed (apt-get install valgrind)")
    env = {**os.environ, "PYTHONMALLOC": "malloc"}  # so Python's allocations are seen as such
    command = [
        "valgrind", "--tool=memcheck", "--leak-check=full", "--show-leak-kinds=definite",
        "--num-callers=40", sys.executable, "-m", "vramguard", "churn", "--codec", codec,
        "--cycles", str(cycles), "--resolution", resolution, "--frames", "3", "--json",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    return parse_memcheck(done.stderr) | {"returncode": done.returncode}


def parse_memcheck(text: str) -> dict[str, Any]:
    """Definite leaks from memcheck's report, and which of them an encoder library holds."""
    total = _DEFINITE.search(text)
    records = []
    blocks = re.split(r"\n==\d+==[ \t]*\n", text)
    for block in blocks:
        match = _RECORD.search(block)
        if match is None:
            continue
        libraries = sorted({lib for lib in ENCODER_LIBRARIES if lib in block})
        records.append({"bytes": int(match.group(1).replace(",", "")), "libraries": libraries})
    in_encoders = [r for r in records if r["libraries"]]
    return {
        "definitely_lost_bytes": int(total.group(1).replace(",", "")) if total else 0,
        "records": len(records),
        "encoder_records": in_encoders,
        "encoder_lost_bytes": sum(r["bytes"] for r in in_encoders),
        "completed": "LEAK SUMMARY" in text or "All heap blocks were freed" in text,
    }
