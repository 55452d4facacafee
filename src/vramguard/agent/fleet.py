"""Every watched process with its own tracker and detector: `watch`, for many at once.

`Fleet.update(census, t)` feeds each process's reading to its MemoryTracker (the same
detector, verdicts and alerts as `watch`), starts a tracker for a newcomer while under the
cap, and ends the processes that exited (or stopped being selected): each gets a last
verdict (an `exited` event and its log's result line), then its tracker and series are
freed. What the cap keeps out is counted, never silently lost.

Events are dictionaries (`{"event": "leak_alert" | "exited" | "fault", ...}`) handed to
`on_event`; faults are reported once per kind through a FaultLog (permission denied is
counted per process, and names the first).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vramguard.agent.census import Census
from vramguard.agent.discovery import ProcessInfo
from vramguard.agent.logs import ProcessLog
from vramguard.faultlog import FaultLog
from vramguard.report import trend_document
from vramguard.samplelog import LogError
from vramguard.tracker import MemoryTracker, Sample, choose_process_metric
from vramguard.trend import HOUR, DetectorConfig, Trend

Key = tuple[int, int]
#: samples each tracker keeps for attribution: an hour at 15 s (the detector keeps its own)
TRACKER_SAMPLES = 240


@dataclass(frozen=True)
class LogSettings:
    directory: Path
    max_bytes: int
    keep: int
    config: dict[str, Any]


@dataclass
class Watched:
    """One process under watch."""

    info: ProcessInfo
    tracker: MemoryTracker
    t0: float
    log: ProcessLog | None = None
    last: Sample | None = None
    gpu_source: str | None = None  # the probe behind process_gpu_bytes (nvml, drm)

    @property
    def metric(self) -> str | None:
        return self.tracker.metric

    def trend(self) -> Trend:
        return self.tracker.trend()

    def exhaustion_s(self) -> float | None:
        """Seconds until the judged memory reaches its budget at the detected rate, while
        the detector alarms; None otherwise."""
        if not self.tracker.alerts or self.tracker.detector.alarm is None:
            return None
        budget = self.tracker.budget_bytes
        if budget is None and self.last is not None and self.metric != "host_rss_bytes":
            budget = self.last.device_total_bytes
        slope = self.tracker.alerts[-1].slope_bytes_per_hour
        value = self.last.get(self.metric) if self.last is not None and self.metric else None
        if budget is None or value is None or slope <= 0:
            return None
        return max(0.0, (budget - value) / slope * HOUR)


@dataclass
class Fleet:
    """The trackers of every watched process, keyed by (pid, start time)."""

    config: DetectorConfig
    host_budget_bytes: int | None = None  # for judging RSS: the machine's memory
    budget_bytes: int | None = None  # --budget, for every process
    logs: LogSettings | None = None
    on_event: Callable[[dict[str, Any]], None] | None = None
    on_fault: Callable[[str, str], None] | None = None
    watched: dict[Key, Watched] = field(default_factory=dict)
    ended: int = 0  # processes dropped after their last verdict
    over_cap: int = 0  # found but not watched, at the last pass
    alerts_total: int = 0
    faults: FaultLog = field(init=False)
    _denied: set[Key] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.faults = FaultLog(None, self.on_fault)

    def update(self, census: Census, t: float, wall_s: float | None = None) -> None:
        """One interval: readings into trackers, newcomers started, leavers judged."""
        wall = time.time() if wall_s is None else wall_s
        chosen = {info.key: info for info in census.chosen}
        for key in [k for k in self.watched if k not in chosen or k in census.gone]:
            self._end(key, t, "exited")
        for key, info in chosen.items():
            reading = census.readings.get(key)
            if reading is None:
                continue
            watched = self.watched.get(key) or self._start(info, t)
            watched.gpu_source = reading.sources.get("process_gpu_bytes")
            self._sample(watched, Sample.from_reading(reading, t=t - watched.t0, wall_s=wall))
        if census.gpu_lost is not None:
            self.faults.fault("gpu", census.gpu_lost + "; GPU memory is not measured", t)
        for key, fields in census.denied.items():
            if key not in self._denied:
                self._denied.add(key)
                info = chosen[key]
                self.faults.fault(
                    "permission",
                    f"permission denied reading {', '.join(fields)} of pid {info.pid} "
                    f"({info.comm}, uid {info.uid}); the agent needs CAP_SYS_PTRACE "
                    "(and CAP_DAC_READ_SEARCH) to read other users' processes",
                    t,
                )
        if census.over_cap and not self.over_cap:
            self.faults.fault(
                "over-cap",
                f"{len(census.over_cap)} process(es) over --max-processes "
                f"(first: pid {census.over_cap[0].pid}, {census.over_cap[0].comm}); "
                "counted in vramguard_agent_processes_over_cap",
                t,
            )
        self.over_cap = len(census.over_cap)

    def _start(self, info: ProcessInfo, t: float) -> Watched:
        tracker = MemoryTracker(TRACKER_SAMPLES, detector_config=self.config,
                                budget_bytes=self.budget_bytes)  # fmt: skip
        watched = Watched(info, tracker, t0=t)
        if self.logs is not None:
            try:
                watched.log = ProcessLog(self.logs.directory, info, self.logs.config,
                                         self.logs.max_bytes, self.logs.keep)  # fmt: skip
            except (LogError, OSError) as exc:
                self.faults.fault("log", f"{exc}; process {info.pid} runs without a log", t)
        self.watched[info.key] = watched
        return watched

    def _sample(self, watched: Watched, sample: Sample) -> None:
        tracker = watched.tracker
        if tracker.metric is None:
            tracker.metric = choose_process_metric(sample)
            if tracker.metric == "host_rss_bytes" and tracker.budget_bytes is None:
                tracker.budget_bytes = self.host_budget_bytes
        alert = tracker.add(sample)
        watched.last = sample
        self._write(watched, sample.as_dict(), sample.t)
        if alert is not None:
            self.alerts_total += 1
            self._write(watched, alert.as_dict(), sample.t)
            self._emit({**self._who(watched.info), **alert.as_dict()})

    def _end(self, key: Key, t: float, why: str) -> None:
        watched = self.watched.pop(key)
        self._denied.discard(key)
        self.ended += 1
        result = trend_document(watched.trend(), watched.metric)
        self._write(watched, {"result": {**result, "ended": why}}, t - watched.t0)
        if watched.log is not None:
            watched.log.close()
        self._emit({**self._who(watched.info), "event": why, **result})

    def _write(self, watched: Watched, record: dict[str, Any], t: float) -> None:
        if watched.log is None:
            return
        try:
            watched.log.write(record)
        except LogError as exc:
            self.faults.fault("log", str(exc), t)

    def _emit(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event)

    @staticmethod
    def _who(info: ProcessInfo) -> dict[str, Any]:
        return {"pid": info.pid, "comm": info.comm, "unit": info.unit or None,
                "container": info.container or None}  # fmt: skip

    def close(self, t: float) -> None:
        """End every process (the agent stops): each gets its last verdict, logs closed."""
        for key in list(self.watched):
            self._end(key, t, "stopped")

    def leaking(self) -> list[Watched]:
        return [w for w in self.watched.values() if w.tracker.detector.alarm is not None]
