"""Prometheus metrics for any sampler (soak, run, watch, or a server embedding vramguard).

Names follow Prometheus's conventions, as prometheus_client's docs set them out:
`vramguard_<what>_<unit>` in base units (bytes, seconds), `_total` for counters, ratios
0..1, and no unbounded labels. (dcgm-exporter and nvitop publish MiB; this publishes bytes.)
The exporter holds the latest values and renders them on each scrape: a sampler calls
`update(...)` after each sample. It binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from vramguard.tracker import Sample
from vramguard.trend import HOUR, Trend


@dataclass(frozen=True, slots=True)
class MetricDoc:
    name: str
    kind: str  # gauge or counter
    help: str
    labels: tuple[str, ...] = ()


#: every metric the exporter can publish (the runbook documents each; a test checks both)
METRICS: tuple[MetricDoc, ...] = (
    MetricDoc("vramguard_process_gpu_memory_bytes", "gauge", "GPU memory the process holds."),
    MetricDoc("vramguard_device_memory_used_bytes", "gauge", "Memory in use on the device(s)."),
    MetricDoc("vramguard_device_memory_total_bytes", "gauge", "Size of the device(s)."),
    MetricDoc("vramguard_host_resident_memory_bytes", "gauge", "Resident host memory (RSS)."),
    MetricDoc("vramguard_heap_free_bytes", "gauge", "Freed C heap that malloc still keeps."),
    MetricDoc("vramguard_open_handles", "gauge", "Open file descriptors (POSIX) or handles."),
    MetricDoc("vramguard_encoder_sessions", "gauge", "Encoder sessions by state.", ("state",)),
    MetricDoc(
        "vramguard_session_acquisitions_total",
        "counter",
        "Session acquisitions by outcome.",
        ("outcome",),
    ),
    MetricDoc("vramguard_session_reuse_ratio", "gauge", "Share of acquisitions that reused."),
    MetricDoc("vramguard_reference_frames_bytes", "gauge", "Reference frames held, by policy."),
    MetricDoc("vramguard_staging_bytes", "gauge", "Staging buffers by state.", ("state",)),
    MetricDoc("vramguard_frames_encoded_total", "counter", "Frames encoded."),
    MetricDoc(
        "vramguard_frames_dropped_total", "counter", "Frames dropped, by reason.", ("reason",)
    ),
    MetricDoc("vramguard_frames_late_total", "counter", "Frames encoded after their deadline."),
    MetricDoc(
        "vramguard_leak_slope_bytes_per_second",
        "gauge",
        "The detector's growth estimate of the watched metric.",
    ),
    MetricDoc("vramguard_leak_suspected", "gauge", "1 while the leak detector alarms, else 0."),
)


class _Collector(Collector):
    def __init__(self, exporter: MetricsExporter) -> None:
        self._exporter = exporter

    def collect(self) -> Iterator[Any]:
        values = self._exporter.snapshot()
        for doc in METRICS:
            series = values.get(doc.name)
            if series is None:
                continue
            family_type = CounterMetricFamily if doc.kind == "counter" else GaugeMetricFamily
            name = doc.name.removesuffix("_total") if doc.kind == "counter" else doc.name
            family = family_type(name, doc.help, labels=list(doc.labels))
            for labels, value in series.items():
                family.add_metric(list(labels), value)
            yield family


class MetricsExporter:
    """Latest values of a sampler, served over HTTP for Prometheus to scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))
        self._lock = threading.Lock()
        self._values: dict[str, dict[tuple[str, ...], float]] = {}
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    def start(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve /metrics on host:port (port 0: any free port); returns the port."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._server, self._thread = server, thread
        self.port = int(server.server_address[1])
        return self.port

    def close(self) -> None:
        """Stop serving; idempotent."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def snapshot(self) -> dict[str, dict[tuple[str, ...], float]]:
        with self._lock:
            return {name: dict(series) for name, series in self._values.items()}

    def _set(self, name: str, value: float | None, *labels: str) -> None:
        if value is not None:
            self._values.setdefault(name, {})[labels] = float(value)

    def update(
        self,
        sample: Sample,
        trend: Trend | None = None,
        leak_suspected: bool | None = None,
        pool: Mapping[str, Any] | None = None,
    ) -> None:
        """Take the latest sample, the detector's view and the session pool's counters."""
        with self._lock:
            self._set("vramguard_process_gpu_memory_bytes", sample.process_gpu_bytes)
            self._set("vramguard_device_memory_used_bytes", sample.device_used_bytes)
            self._set("vramguard_device_memory_total_bytes", sample.device_total_bytes)
            self._set("vramguard_host_resident_memory_bytes", sample.host_rss_bytes)
            self._set("vramguard_heap_free_bytes", sample.heap_free_bytes)
            self._set("vramguard_open_handles", sample.open_handles)
            self._set("vramguard_encoder_sessions", sample.sessions_active, "active")
            self._set("vramguard_encoder_sessions", sample.sessions_idle, "idle")
            self._set("vramguard_reference_frames_bytes", sample.reference_bytes)
            self._set("vramguard_staging_bytes", sample.staging_in_use_bytes, "in_use")
            self._set("vramguard_staging_bytes", sample.staging_idle_bytes, "idle")
            self._set("vramguard_frames_encoded_total", sample.frames_encoded)
            self._set("vramguard_frames_dropped_total", sample.frames_dropped_memory, "memory")
            self._set("vramguard_frames_late_total", sample.frames_late)
            if pool is not None:
                created = float(pool["created"])
                self._set("vramguard_session_acquisitions_total", created, "created")
                self._set("vramguard_session_acquisitions_total", float(pool["reused"]), "reused")
                self._set("vramguard_session_reuse_ratio", float(pool["reuse_rate"]))
            if trend is not None and trend.slope_bytes_per_hour is not None:
                self._set(
                    "vramguard_leak_slope_bytes_per_second", trend.slope_bytes_per_hour / HOUR
                )
            if leak_suspected is not None:
                self._set("vramguard_leak_suspected", 1.0 if leak_suspected else 0.0)
