"""Every watched process with its own Recorder: `watch`, for many processes at once.

Each process gets a `Recorder` (the one sampling path: tracker and detector, its log, its
faults, a bounded series for the verdict), fed by the agent's one pass per interval rather
than by a sampler thread of its own. `Fleet.update(census, t)` records each process's
reading (the same detector, verdicts and alerts as `watch`), starts a recorder for a
newcomer while under the cap, and ends the processes that exited: each gets a last verdict
(the detector replayed over its series, as `watch` ends; an `exited` event and its log's
result line), then its recorder is freed. What the cap keeps out is counted, never lost
silently.

Events are dictionaries (`{"event": "leak_alert" | "exited" | "stopped", ...}`) handed to
`on_event`. Faults are said once per kind for the whole fleet (`faults`; a recorder's own
faults, a full log directory say, go there too), permission denied counted per process.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vramguard.agent.census import Census
from vramguard.agent.discovery import ProcessInfo
from vramguard.faultlog import FaultLog
from vramguard.probes import Reading
from vramguard.recorder import Recorder, budget_for
from vramguard.report import trend_document
from vramguard.samplelog import LogError, SampleLogWriter
from vramguard.tracker import LeakAlert, MemoryTracker, Sample, choose_process_metric
from vramguard.trend import HOUR, DetectorConfig, Trend

Key = tuple[int, int]
#: samples each tracker keeps for attribution: an hour at 15 s (the detector keeps its own)
TRACKER_SAMPLES = 240
#: points each recorder's series keeps for the last verdict (it thins past them)
SERIES_POINTS = 512
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class LogSettings:
    """`--log-dir`: one log per process, rotated at `max_bytes`, `keep` older files."""

    directory: Path
    max_bytes: int
    keep: int
    config: dict[str, Any]


def log_name(info: ProcessInfo) -> str:
    """`<comm>-<pid>-<start ticks>.jsonl`: a reused pid gets a file of its own."""
    comm = _UNSAFE.sub("_", info.comm)[:32] or "process"
    return f"{comm}-{info.pid}-{info.start_ticks}.jsonl"


def _never() -> Reading:
    raise AssertionError("the agent's recorders are fed by its pass, never read themselves")


@dataclass
class Watched:
    """One process under watch."""

    info: ProcessInfo
    recorder: Recorder
    t0: float
    gpu_source: str | None = None  # the probe behind process_gpu_bytes (nvml, drm)

    @property
    def tracker(self) -> MemoryTracker:
        assert self.recorder.tracker is not None
        return self.recorder.tracker

    @property
    def last(self) -> Sample | None:
        return self.recorder.last

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
        budget = self.tracker.budget_bytes or budget_for(self.metric, self.last)
        slope = self.tracker.alerts[-1].slope_bytes_per_hour
        value = self.last.get(self.metric) if self.last is not None and self.metric else None
        if budget is None or value is None or slope <= 0:
            return None
        return max(0.0, (budget - value) / slope * HOUR)


@dataclass
class Fleet:
    """The recorders of every watched process, keyed by (pid, start time)."""

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
    _t: float = 0.0  # the pass being recorded, for faults a recorder reports

    def __post_init__(self) -> None:
        self.faults = FaultLog(None, self.on_fault)

    def update(self, census: Census, t: float) -> None:
        """One interval (`t`: the agent's monotonic seconds): readings into recorders,
        newcomers started, leavers judged. A process's samples count from when it was found
        (`t` and `wall_s` alike, as docs/log-format.md says)."""
        self._t = t
        chosen = {info.key: info for info in census.chosen}
        for key in [k for k in self.watched if k not in chosen or k in census.gone]:
            self._end(key, t, "exited")
        for key, info in chosen.items():
            reading = census.readings.get(key)
            if reading is None:
                continue
            watched = self.watched.get(key) or self._start(info, t)
            watched.gpu_source = reading.sources.get("process_gpu_bytes")
            since = t - watched.t0
            self._record(watched, Sample.from_reading(reading, t=since, wall_s=since))
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
        log = None
        if self.logs is not None:
            try:
                log = SampleLogWriter(
                    self.logs.directory / log_name(info),
                    {"pid": info.pid, "comm": info.comm, "unit": info.unit,
                     "container": info.container, "cgroup": info.cgroup},
                    self.logs.config, max_bytes=self.logs.max_bytes, keep=self.logs.keep,
                )  # fmt: skip
            except LogError as exc:
                self.faults.fault("log", f"{exc}; process {info.pid} runs without a log", t)
        watched = Watched(info, Recorder(_never, tracker, log, pid=info.pid, capacity=64,
                                         max_points=SERIES_POINTS), t0=t)  # fmt: skip
        watched.recorder.on_alert = lambda alert: self._alert(watched, alert)
        watched.recorder.reports.on_fault = self._recorder_fault
        self.watched[info.key] = watched
        return watched

    def _recorder_fault(self, kind: str, message: str) -> None:
        self.faults.fault(kind, message, self._t)

    def _record(self, watched: Watched, sample: Sample) -> None:
        tracker = watched.tracker
        if tracker.metric is None:  # chosen here, so that RSS is judged against the RAM
            tracker.metric = choose_process_metric(sample)
            if tracker.metric == "host_rss_bytes" and tracker.budget_bytes is None:
                tracker.budget_bytes = self.host_budget_bytes
        watched.recorder.add(sample)

    def _alert(self, watched: Watched, alert: LeakAlert) -> None:
        self.alerts_total += 1
        self._emit({**self._who(watched.info), **alert.as_dict()})

    def _end(self, key: Key, t: float, why: str) -> None:
        watched = self.watched.pop(key)
        self._denied.discard(key)
        self.ended += 1
        recorder = watched.recorder
        verdict = recorder.verdict(self.config, watched.tracker.budget_bytes)
        result = {**trend_document(verdict, watched.metric), "online": watched.trend().verdict}
        recorder.write({"result": {**result, "ended": why}}, t - watched.t0)
        recorder.close()
        if recorder.log is not None:
            recorder.log.close()
        self._emit({**self._who(watched.info), "event": why, **result})

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
