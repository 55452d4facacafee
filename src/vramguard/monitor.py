"""Sampling one process over its life: probe, tracker, log and alerts, every interval.

`run` and `watch` (and a server embedding the library) share this loop; the runner of a
soak has its own, since its samples carry what the pools hold. Each reading runs on a
Sampler thread under `time_limit_s`: a probe that raises or hangs costs that sample (None),
is reported once through `on_fault` and the log, and sampling goes on. `close()` stops the
sampler thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.text import Text

from vramguard import probes
from vramguard.exporter import MetricsExporter
from vramguard.faultlog import FaultLog
from vramguard.loadsignal import LoadSource
from vramguard.report import trend_document
from vramguard.samplelog import SampleLogWriter
from vramguard.sampler import DEFAULT_TIME_LIMIT_S, Sampler
from vramguard.tracker import LeakAlert, MemoryTracker, Sample, choose_process_metric
from vramguard.trend import DetectorConfig, Trend, detect_leak
from vramguard.units import format_bytes, format_duration


@dataclass
class Monitor:
    """Samples `pid` into a tracker and (optionally) a log; `on_alert` hears each new alert."""

    pid: int
    tracker: MemoryTracker
    log: SampleLogWriter | None = None
    on_alert: Callable[[LeakAlert], None] | None = None
    on_sample: Callable[[Monitor, Sample], None] | None = None
    clock: Callable[[], float] = time.monotonic
    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    on_fault: Callable[[str, str], None] | None = None
    load_source: LoadSource | None = None
    _sampler: Sampler[object] | None = None
    _reports: FaultLog = field(init=False)
    _start: float | None = None
    times: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    last: Sample | None = None

    def __post_init__(self) -> None:
        self._reports = FaultLog(self.log, self.on_fault)

    @property
    def faults(self) -> dict[str, dict[str, Any]]:
        """kind -> count, first time and message of each fault met so far."""
        return self._reports.faults

    def sample(self) -> Sample | None:
        """One reading now; None when the probe failed or hung (reported once).
        Raises probes.NoSuchProcess once the process is gone."""
        now = self.clock()
        if self._start is None:
            self._start = now
        if self._sampler is None:
            self._sampler = Sampler(lambda: probes.read(self.pid), self.time_limit_s)
        done = self._sampler.wait(object())
        if done.gone:
            raise probes.NoSuchProcess(self.pid)
        if done.reading is None:
            self._reports.fault("probe", done.error or "no reading", now - self._start)
            return None
        sample = Sample.from_reading(done.reading, t=now - self._start, wall_s=time.time())
        if self.load_source is not None:
            sample = replace(sample, load=self.load_source.read(sample))
            self.tracker.load_field = "load"
        if self.tracker.metric is None:
            self.tracker.metric = choose_process_metric(sample)
        alert = self.tracker.add(sample)
        self._reports.write(sample.as_dict(), sample.t)
        value = sample.get(self.tracker.metric) if self.tracker.metric else None
        if value is not None:
            self.times.append(sample.t)
            self.values.append(value)
            self.loads.append(math.nan if sample.load is None else sample.load)
        if alert is not None:
            self._reports.write(alert.as_dict(), sample.t)
            if self.on_alert is not None:
                self.on_alert(alert)
        self.last = sample
        if self.on_sample is not None:
            self.on_sample(self, sample)
        return sample

    def close(self) -> None:
        """Stop the sampler thread (one stuck in a probe is left behind as a daemon)."""
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None

    @property
    def duration_s(self) -> float:
        """Seconds between the first and the last sample of the judged metric."""
        return self.times[-1] - self.times[0] if self.times else 0.0

    def verdict(self, config: DetectorConfig, budget_bytes: float | None = None) -> Trend:
        """The detector replayed over every sample of the run (not only the tracker's)."""
        if (
            budget_bytes is None
            and self.last is not None
            and self.tracker.metric != "host_rss_bytes"
        ):
            budget_bytes = self.last.device_total_bytes
        load = np.array(self.loads) if self.load_source is not None else None
        return detect_leak(np.array(self.times), np.array(self.values), config, budget_bytes,
                           load=load)  # fmt: skip


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
            slope = f"trend {trend.slope_bytes_per_hour / 1e6:+.2f} MB/h"
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
