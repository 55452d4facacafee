"""The one list of what a sample holds: each field's name, unit, meaning, who measures it,
and the Prometheus metric (and label) that publishes it.

`Sample` (its fields, in this order), the probes' `Reading`, the JSONL log's validation,
`watch`'s table and the exporter all take their lists from `FIELDS`; a new field is
one line here plus its attribute on `Sample` (an import-time check says when they differ).
Metric names are written once, in `MetricDoc`s below; the exporter publishes a field through
its `metric`. Imports nothing: probes, the log reader and the node agent can use it freely.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MetricDoc:
    """One Prometheus metric: `vramguard_<what>_<unit>`, base units, `_total` for counters."""

    name: str
    kind: str  # gauge or counter
    help: str
    labels: tuple[str, ...] = ()


PROCESS_GPU = MetricDoc(
    "vramguard_process_gpu_memory_bytes", "gauge", "GPU memory the process holds."
)
DEVICE_USED = MetricDoc(
    "vramguard_device_memory_used_bytes", "gauge", "Memory in use on the device(s)."
)
DEVICE_TOTAL = MetricDoc("vramguard_device_memory_total_bytes", "gauge", "Size of the device(s).")
HOST_RSS = MetricDoc("vramguard_host_resident_memory_bytes", "gauge", "Resident host memory (RSS).")
HEAP_FREE = MetricDoc("vramguard_heap_free_bytes", "gauge", "Freed C heap that malloc still keeps.")
OPEN_HANDLES = MetricDoc(
    "vramguard_open_handles", "gauge", "Open file descriptors (POSIX) or handles."
)
ENCODER_SESSIONS = MetricDoc(
    "vramguard_encoder_sessions", "gauge", "Encoder sessions by state.", ("state",)
)
SESSION_ACQUISITIONS = MetricDoc(
    "vramguard_session_acquisitions_total",
    "counter",
    "Sessions asked for, by outcome: created, reused (a pooled session) or adapted (a rate"
    " change the client's own session took in place).",
    ("outcome",),
)
SESSION_REUSE = MetricDoc(
    "vramguard_session_reuse_ratio", "gauge", "Share of acquisitions that reused."
)
REFERENCE_FRAMES = MetricDoc(
    "vramguard_reference_frames_bytes", "gauge", "Reference frames held, by policy."
)
STAGING = MetricDoc("vramguard_staging_bytes", "gauge", "Staging buffers by state.", ("state",))
FRAMES_ENCODED = MetricDoc("vramguard_frames_encoded_total", "counter", "Frames encoded.")
FRAMES_DROPPED = MetricDoc(
    "vramguard_frames_dropped_total", "counter", "Frames dropped, by reason.", ("reason",)
)
FRAMES_LATE = MetricDoc(
    "vramguard_frames_late_total", "counter", "Frames encoded after their deadline."
)
LEAK_SLOPE = MetricDoc(
    "vramguard_leak_slope_bytes_per_second",
    "gauge",
    "The detector's growth estimate of the watched metric.",
)
LEAK_SUSPECTED = MetricDoc(
    "vramguard_leak_suspected", "gauge", "1 while the leak detector alarms, else 0."
)


@dataclass(frozen=True, slots=True)
class SampleField:
    """One field of a sample. `source`: "clock" (the runner's times), "probe" (a probe
    measures it; a `Reading` carries it), "ledger" (what our own pools and counters hold) or
    "load" (the load signal of run/watch)."""

    name: str
    unit: str  # "s", "bytes" or "count"
    help: str
    source: str
    metric: MetricDoc | None = None
    label: str | None = None  # the metric's label value for this field

    @property
    def is_bytes(self) -> bool:
        return self.unit == "bytes"

    @property
    def is_float(self) -> bool:
        """Kept as a float in a sample (times, the load); every other field is an integer."""
        return self.unit == "s" or self.source == "load"


def _f(
    name: str,
    unit: str,
    help: str,
    source: str,
    metric: MetricDoc | None = None,
    label: str | None = None,
) -> SampleField:
    return SampleField(name, unit, help, source, metric, label)


#: Every field a sample may carry, in display and log order. Sizes are bytes.
FIELDS: tuple[SampleField, ...] = (
    _f("t", "s", "stream time of the sample, from the start of the run", "clock"),
    _f("wall_s", "s", "wall seconds since the start of the run", "clock"),
    _f("process_gpu_bytes", "bytes", "GPU memory the process holds", "probe", PROCESS_GPU),
    _f("device_used_bytes", "bytes", "memory in use on the device(s)", "probe", DEVICE_USED),
    _f("device_total_bytes", "bytes", "size of the device(s)", "probe", DEVICE_TOTAL),
    _f("encoder_sessions", "count", "encoder sessions the driver counts", "probe"),
    _f("host_rss_bytes", "bytes", "resident host memory (RSS)", "probe", HOST_RSS),
    _f("host_uss_bytes", "bytes", "host memory only this process holds (USS)", "probe"),
    _f("heap_in_use_bytes", "bytes", "C heap in use (malloc)", "probe"),
    _f("heap_free_bytes", "bytes", "C heap freed but kept by malloc", "probe", HEAP_FREE),
    _f("open_handles", "count", "open file descriptors or handles", "probe", OPEN_HANDLES),
    _f("threads", "count", "threads of the process", "probe"),
    _f("sessions_active", "count", "encoder sessions leased", "ledger", ENCODER_SESSIONS, "active"),
    _f(
        "sessions_idle",
        "count",
        "encoder sessions warm in the pool",
        "ledger",
        ENCODER_SESSIONS,
        "idle",
    ),
    _f(
        "reference_bytes",
        "bytes",
        "reference frames held, by the policy",
        "ledger",
        REFERENCE_FRAMES,
    ),
    _f(
        "staging_in_use_bytes",
        "bytes",
        "staging buffers leased (fenced ones included)",
        "ledger",
        STAGING,
        "in_use",
    ),
    _f(
        "staging_idle_bytes", "bytes", "staging buffers idle in the pool", "ledger", STAGING, "idle"
    ),
    _f("frames_encoded", "count", "frames encoded so far", "ledger", FRAMES_ENCODED),
    _f(
        "frames_dropped_memory",
        "count",
        "frames dropped for memory so far",
        "ledger",
        FRAMES_DROPPED,
        "memory",
    ),
    _f("frames_late", "count", "frames encoded after their deadline so far", "ledger", FRAMES_LATE),
    _f("load", "count", "the load signal run/watch read (sessions, clients)", "load"),
)

BY_NAME: dict[str, SampleField] = {f.name: f for f in FIELDS}
NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
#: the fields a probe measures (a `Reading`'s), in display order
PROBE_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.source == "probe")
#: the fields our own pools and counters report (a pipeline's ledger)
LEDGER_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.source == "ledger")
#: every metric the exporter publishes: the fields' own, then the pool's and the detector's
METRICS: tuple[MetricDoc, ...] = (
    *dict.fromkeys(f.metric for f in FIELDS if f.metric is not None),
    SESSION_ACQUISITIONS,
    SESSION_REUSE,
    LEAK_SLOPE,
    LEAK_SUSPECTED,
)
