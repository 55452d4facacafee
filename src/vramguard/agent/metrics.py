"""The agent's Prometheus metrics: one series per watched process, and the agent's own cost.

Process series carry `pid`, `comm` (the kernel's 15-character name), `unit` (the systemd
unit) and `container` (12 hex digits) where the cgroup gives them, empty otherwise.
Cardinality is bounded: at most `--max-processes` processes (default 256) times the
per-process series below (about ten each), and a process's series leave the scrape when it
exits (Prometheus marks them stale), so pid churn does not accumulate series in the
exporter; in Prometheus each process lives as long as the retention keeps it.
"""

from __future__ import annotations

from typing import Any

from vramguard.agent.fleet import Fleet, Watched
from vramguard.exporter import MetricDoc, MetricsExporter, _Collector
from vramguard.trend import HOUR

PROCESS = ("pid", "comm", "unit", "container")

#: every metric the agent publishes (the runbook documents each; a test checks both)
AGENT_METRICS: tuple[MetricDoc, ...] = (
    MetricDoc("vramguard_agent_process_gpu_memory_bytes", "gauge",
              "GPU memory a watched process holds, by probe.", (*PROCESS, "source")),
    MetricDoc("vramguard_agent_process_resident_memory_bytes", "gauge",
              "Resident host memory (RSS) of a watched process.", PROCESS),
    MetricDoc("vramguard_agent_process_growth_bytes_per_second", "gauge",
              "The detector's growth of the judged memory: estimate and 95% interval.",
              (*PROCESS, "metric", "bound")),
    MetricDoc("vramguard_leak", "gauge",
              "1 while the process's leak detector alarms, else 0.", (*PROCESS, "metric")),
    MetricDoc("vramguard_agent_process_exhaustion_seconds", "gauge",
              "Seconds until the judged memory reaches its budget, while leaking.",
              (*PROCESS, "metric")),
    MetricDoc("vramguard_agent_process_alerts_total", "counter",
              "Leak alerts raised for the process.", PROCESS),
    MetricDoc("vramguard_agent_sample_seconds", "gauge",
              "Wall time of the agent's last pass over every process."),
    MetricDoc("vramguard_agent_processes_tracked", "gauge", "Processes watched now."),
    MetricDoc("vramguard_agent_processes_over_cap", "gauge",
              "Processes found but not watched: over --max-processes."),
    MetricDoc("vramguard_agent_processes_dropped_total", "counter",
              "Processes dropped after their last verdict (exited)."),
    MetricDoc("vramguard_agent_faults_total", "counter",
              "Faults met, by kind (probe, gpu, permission, log, over-cap).", ("kind",)),
    MetricDoc("vramguard_agent_resident_memory_bytes", "gauge", "The agent's own RSS."),
    MetricDoc("vramguard_agent_cpu_seconds_total", "counter", "The agent's own CPU time."),
)  # fmt: skip

_BOUNDS = ("estimate", "lower", "upper")


class AgentExporter(MetricsExporter):
    """Serves the fleet's latest state; `publish` replaces it whole after every pass."""

    def __init__(self) -> None:
        super().__init__()
        self.registry.register(_Collector(self, AGENT_METRICS))

    def publish(self, fleet: Fleet, cost: dict[str, float]) -> None:
        values: dict[str, dict[tuple[str, ...], float]] = {d.name: {} for d in AGENT_METRICS}
        for watched in fleet.watched.values():
            _process(values, watched)
        values["vramguard_agent_processes_tracked"][()] = len(fleet.watched)
        values["vramguard_agent_processes_over_cap"][()] = fleet.over_cap
        values["vramguard_agent_processes_dropped_total"][()] = fleet.ended
        for kind, entry in fleet.faults.faults.items():
            values["vramguard_agent_faults_total"][(kind,)] = entry["count"]
        for name, value in cost.items():
            values[f"vramguard_agent_{name}"][()] = value
        with self._lock:
            self._values = values


def _process(values: dict[str, dict[tuple[str, ...], Any]], watched: Watched) -> None:
    info, last = watched.info, watched.last
    labels = (str(info.pid), info.comm, info.unit, info.container)
    if last is None:
        return
    if last.process_gpu_bytes is not None:
        source = watched.gpu_source or "unknown"
        values["vramguard_agent_process_gpu_memory_bytes"][(*labels, source)] = (
            last.process_gpu_bytes
        )
    if last.host_rss_bytes is not None:
        values["vramguard_agent_process_resident_memory_bytes"][labels] = last.host_rss_bytes
    values["vramguard_agent_process_alerts_total"][labels] = len(watched.tracker.alerts)
    metric = watched.metric
    if metric is None:
        return
    alarming = watched.tracker.detector.alarm is not None
    values["vramguard_leak"][(*labels, metric)] = 1.0 if alarming else 0.0
    trend = watched.trend()
    if trend.slope_bytes_per_hour is not None:
        low, high = trend.slope_ci_bytes_per_hour or (trend.slope_bytes_per_hour,) * 2
        growth = values["vramguard_agent_process_growth_bytes_per_second"]
        for bound, slope in zip(_BOUNDS, (trend.slope_bytes_per_hour, low, high), strict=True):
            growth[(*labels, metric, bound)] = slope / HOUR
    exhaustion = watched.exhaustion_s()
    if exhaustion is not None:
        values["vramguard_agent_process_exhaustion_seconds"][(*labels, metric)] = exhaustion
