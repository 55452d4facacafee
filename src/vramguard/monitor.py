"""Sampling one process over its life, every interval: `run` and `watch` (and a server
embedding the library) call `Monitor.sample()`.

The sampling itself is the `Recorder`'s (the same path the soak and the churn take): each
reading runs on a Sampler thread under `time_limit_s`; a probe that raises or hangs costs
that sample (None), is reported once through `on_fault` and the log, and sampling goes on.
`wall_s` is seconds since the first sample, as docs/log-format.md says. `close()` stops the
sampler thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.live import Live
from rich.text import Text

from vramguard import probes
from vramguard.exporter import MetricsExporter
from vramguard.loadsignal import LoadSource
from vramguard.noise import Variogram
from vramguard.probes import Reading
from vramguard.recorder import Recorder
from vramguard.report import trend_document
from vramguard.samplelog import SampleLogWriter
from vramguard.sampler import DEFAULT_TIME_LIMIT_S
from vramguard.tracker import LeakAlert, MemoryTracker, Sample
from vramguard.trend import DetectorConfig, Trend
from vramguard.units import format_bytes, format_duration, format_rate


class Monitor:
    """Samples `pid` into a tracker and (optionally) a log; `on_alert` hears each new alert.
    `read(pid)` takes a reading (the probes by default; a seam for tests and embedders)."""

    def __init__(
        self,
        pid: int,
        tracker: MemoryTracker,
        log: SampleLogWriter | None = None,
        on_alert: Callable[[LeakAlert], None] | None = None,
        on_sample: Callable[[Monitor, Sample], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        time_limit_s: float = DEFAULT_TIME_LIMIT_S,
        on_fault: Callable[[str, str], None] | None = None,
        load_source: LoadSource | None = None,
        read: Callable[[int], Reading] = probes.read,
    ) -> None:
        self.pid = pid
        self.tracker = tracker
        self.log = log
        self.clock = clock
        self.load_source = load_source
        self._start: float | None = None
        hear = None if on_sample is None else (lambda sample: on_sample(self, sample))
        self.recorder = Recorder(
            lambda: read(pid), tracker, log, pid=pid, time_limit_s=time_limit_s,
            on_sample=hear, on_alert=on_alert, on_fault=on_fault, load_source=load_source,
        )  # fmt: skip

    @property
    def faults(self) -> dict[str, dict[str, Any]]:
        """kind -> count, first time and message of each fault met so far."""
        return self.recorder.faults

    @property
    def last(self) -> Sample | None:
        return self.recorder.last

    @property
    def times(self) -> npt.NDArray[np.float64]:
        return self.recorder.series.times

    @property
    def values(self) -> npt.NDArray[np.float64]:
        return self.recorder.series.values

    def sample(self) -> Sample | None:
        """One reading now; None when the probe failed or hung (reported once).
        Raises probes.NoSuchProcess once the process is gone."""
        now = self.clock()
        if self._start is None:
            self._start = now
        return self.recorder.take(now - self._start, now - self._start)

    def close(self) -> None:
        """Stop the sampler thread (one stuck in a probe is left behind as a daemon)."""
        self.recorder.close()

    @property
    def duration_s(self) -> float:
        """Seconds between the first and the last sample of the judged metric."""
        return self.recorder.duration_s

    def verdict(
        self,
        config: DetectorConfig,
        budget_bytes: float | None = None,
        noise_prior: Variogram | None = None,
    ) -> Trend:
        """The detector replayed over every sample of the run (not only the tracker's)."""
        return self.recorder.verdict(config, budget_bytes, noise_prior)


def result_document(monitor: Monitor, trend: Trend, **extra: Any) -> dict[str, Any]:
    """The end of a run, as the log's result line and `--json` print it."""
    alerts = monitor.tracker.alerts
    return {
        **trend_document(trend, monitor.tracker.metric),
        "likely_source": alerts[-1].likely_source if alerts else None,
        "faults": monitor.faults,
        "log_error": monitor.log.error if monitor.log is not None else None,
        **extra,
    }


def export_to(exporter: MetricsExporter | None) -> Callable[[Monitor, Sample], None] | None:
    """A Monitor.on_sample that feeds the exporter, or None without one."""
    if exporter is None:
        return None

    def feed(monitor: Monitor, sample: Sample) -> None:
        tracker = monitor.tracker
        exporter.update(sample, tracker.trend(), tracker.detector.alarm is not None)

    return feed


class StatusLine:
    """The live state of a run while it waits: memory now, the trend, samples and alerts.
    On a terminal, one line redrawn in place (on stderr); elsewhere (a CI log), a plain
    line about once a minute."""

    def __init__(self, console: Console, name: str, every_s: float = 60.0) -> None:
        self.console = console
        self.name = name
        self.every_s = every_s
        self._printed_at = -math.inf
        self._live: Live | None = None
        if console.is_terminal:
            self._live = Live(Text(""), console=console, auto_refresh=False, transient=True)
            self._live.start()

    def text(self, monitor: Monitor) -> str:
        tracker = monitor.tracker
        metric = tracker.metric or "memory"
        value = monitor.last.get(metric) if monitor.last is not None else None
        now = format_bytes(value) if value is not None else "not measured"
        trend = tracker.trend()
        if trend.slope_bytes_per_hour is None:
            slope = "trend: learning"
        else:
            slope = f"trend {format_rate(trend.slope_bytes_per_hour)}"
        alerts = f", {len(tracker.alerts)} alert(s)" if tracker.alerts else ""
        elapsed = format_duration(monitor.duration_s)
        return (f"{self.name}: {metric} {now}, {slope}, {len(monitor.times)} samples "
                f"over {elapsed}{alerts}")  # fmt: skip

    def show(self, monitor: Monitor) -> None:
        line = self.text(monitor)
        if self._live is not None:
            self._live.update(Text(line), refresh=True)
            return
        now = time.monotonic()
        if now - self._printed_at >= self.every_s:
            self._printed_at = now
            self.console.print(f"vramguard: {line}", highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
