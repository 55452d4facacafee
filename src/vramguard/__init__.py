"""vramguard: keep hardware video encoders' memory flat over streaming sessions that last days.

The public API is re-exported here; everything else is an implementation detail.
"""

from vramguard.encode import (
    BitrateOutOfRange,
    EncoderConfig,
    EncoderError,
    EncoderSession,
    EncoderUnavailable,
    open_encoder,
    warm_session_bytes,
)
from vramguard.exporter import MetricsExporter
from vramguard.heap import HeapStats, heap_stats, heap_unavailable_reason, trim_heap
from vramguard.monitor import Monitor
from vramguard.pools.references import ReferencePolicy, ReferenceTracker
from vramguard.pools.sessions import Lease, PoolError, PoolExhausted, SessionPool
from vramguard.pools.staging import (
    Pressure,
    StagingAllocationFailed,
    StagingBudgetExceeded,
    StagingLease,
    StagingPool,
)
from vramguard.probes import NoSuchProcess, ProbeStatus, Reading, read
from vramguard.promhistory import PrometheusError, PromSeries, RangeQuery, read_range
from vramguard.samplelog import LogError, SampleLog, SampleLogWriter, read_log
from vramguard.sampler import Sampler, SampleResult
from vramguard.soak import Criteria, SoakConfig, SoakRunner
from vramguard.sources import LavfiSource, SyntheticSource
from vramguard.tracker import LeakAlert, MemoryTracker, Sample
from vramguard.trend import DetectorConfig, LeakDetector, Trend, detect_leak
from vramguard.units import format_bytes, parse_duration, parse_resolution, parse_size

__version__ = "0.1.0"

__all__ = [
    "BitrateOutOfRange",
    "Criteria",
    "DetectorConfig",
    "EncoderConfig",
    "EncoderError",
    "EncoderSession",
    "EncoderUnavailable",
    "HeapStats",
    "LavfiSource",
    "LeakAlert",
    "LeakDetector",
    "Lease",
    "LogError",
    "MemoryTracker",
    "MetricsExporter",
    "Monitor",
    "NoSuchProcess",
    "PoolError",
    "PoolExhausted",
    "Pressure",
    "ProbeStatus",
    "PromSeries",
    "PrometheusError",
    "RangeQuery",
    "Reading",
    "ReferencePolicy",
    "ReferenceTracker",
    "Sample",
    "SampleLog",
    "SampleLogWriter",
    "SampleResult",
    "Sampler",
    "SessionPool",
    "SoakConfig",
    "SoakRunner",
    "StagingAllocationFailed",
    "StagingBudgetExceeded",
    "StagingLease",
    "StagingPool",
    "SyntheticSource",
    "Trend",
    "__version__",
    "detect_leak",
    "format_bytes",
    "heap_stats",
    "heap_unavailable_reason",
    "open_encoder",
    "parse_duration",
    "parse_resolution",
    "parse_size",
    "read",
    "read_log",
    "read_range",
    "trim_heap",
    "warm_session_bytes",
]
