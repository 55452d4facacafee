"""Prometheus metrics for any sampler (soak, run, watch, or a server embedding vramguard).

Names follow Prometheus's conventions, as prometheus_client's docs set them out:
`vramguard_<what>_<unit>` in base units (bytes, seconds), `_total` for counters, ratios
0..1, and no unbounded labels. (dcgm-exporter and nvitop publish MiB; this publishes bytes.)
The exporter holds the latest values and renders them on each scrape: a sampler calls
`update(...)` after each sample. The metric names and what publishes them are in
`vramguard.fields` (written once there). It binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from vramguard.fields import (
    FIELDS,
    LEAK_SLOPE,
    LEAK_SUSPECTED,
    METRICS,
    SESSION_ACQUISITIONS,
    SESSION_REUSE,
    MetricDoc,
)
from vramguard.tracker import Sample
from vramguard.trend import HOUR, Trend

__all__ = ["METRICS", "MetricDoc", "MetricsExporter"]


class _Collector(Collector):
    def __init__(self, exporter: MetricsExporter, docs: tuple[MetricDoc, ...] = METRICS) -> None:
        self._exporter = exporter
        self._docs = docs

    def collect(self) -> Iterator[Any]:
        values = self._exporter.snapshot()
        for doc in self._docs:
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
            for field in FIELDS:
                if field.metric is not None:
                    labels = (field.label,) if field.label is not None else ()
                    self._set(field.metric.name, getattr(sample, field.name), *labels)
            if pool is not None:
                self._set(SESSION_ACQUISITIONS.name, float(pool["created"]), "created")
                self._set(SESSION_ACQUISITIONS.name, float(pool["reused"]), "reused")
                self._set(SESSION_ACQUISITIONS.name, pool.get("adapted"), "adapted")
                self._set(SESSION_REUSE.name, float(pool["reuse_rate"]))
            if trend is not None and trend.slope_bytes_per_hour is not None:
                self._set(LEAK_SLOPE.name, trend.slope_bytes_per_hour / HOUR)
            if leak_suspected is not None:
                self._set(LEAK_SUSPECTED.name, 1.0 if leak_suspected else 0.0)
