"""vramguard: keep hardware video encoders' memory flat over streaming sessions that last days.

The public API is re-exported here; everything else is an implementation detail.

Names load on first use (PEP 562), so that `from vramguard import probes` or a command's
start imports only what it needs: PyAV and prometheus_client come in with the names that use
them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vramguard.agent import Agent, AgentExporter, Fleet, ProcessInfo, Selector
    from vramguard.criteria import CriterionRow
    from vramguard.encode import (
        BitrateOutOfRange,
        EncoderConfig,
        EncoderError,
        EncoderSession,
        EncoderUnavailable,
        open_encoder,
        warm_session_bytes,
    )
    from vramguard.errors import VramguardError
    from vramguard.exporter import MetricsExporter
    from vramguard.fields import SampleField
    from vramguard.heap import HeapStats, heap_stats, heap_unavailable_reason, trim_heap
    from vramguard.monitor import Monitor
    from vramguard.noise import Variogram
    from vramguard.pipelines import BaselinePipeline, ManagedPipeline, Pipeline, PipelineLedger
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
    from vramguard.recorder import Recorder
    from vramguard.samplelog import LogError, LogFormatError, SampleLog, SampleLogWriter, read_log
    from vramguard.sampler import Sampler, SampleResult
    from vramguard.soak import Criteria, SoakConfig, SoakRunner
    from vramguard.soakresult import SoakResult
    from vramguard.sources import LavfiSource, SyntheticSource
    from vramguard.tracker import LeakAlert, MemoryTracker, Sample
    from vramguard.trend import DetectorConfig, LeakDetector, Trend, detect_leak, noise_from
    from vramguard.units import format_bytes, parse_duration, parse_resolution, parse_size
    from vramguard.wander import likelihood_ratios, ramp_likelihood_ratio

#: public name -> the module it lives in
_EXPORTS: dict[str, str] = {
    "Agent": "vramguard.agent",
    "AgentExporter": "vramguard.agent",
    "Fleet": "vramguard.agent",
    "ProcessInfo": "vramguard.agent",
    "Selector": "vramguard.agent",
    "VramguardError": "vramguard.errors",
    "Recorder": "vramguard.recorder",
    "SoakResult": "vramguard.soakresult",
    "Pipeline": "vramguard.pipelines",
    "ManagedPipeline": "vramguard.pipelines",
    "BaselinePipeline": "vramguard.pipelines",
    "PipelineLedger": "vramguard.pipelines",
    "SampleField": "vramguard.fields",
    "LogFormatError": "vramguard.samplelog",
    "CriterionRow": "vramguard.criteria",
    "BitrateOutOfRange": "vramguard.encode",
    "EncoderConfig": "vramguard.encode",
    "EncoderError": "vramguard.encode",
    "EncoderSession": "vramguard.encode",
    "EncoderUnavailable": "vramguard.encode",
    "open_encoder": "vramguard.encode",
    "warm_session_bytes": "vramguard.encode",
    "MetricsExporter": "vramguard.exporter",
    "HeapStats": "vramguard.heap",
    "heap_stats": "vramguard.heap",
    "heap_unavailable_reason": "vramguard.heap",
    "trim_heap": "vramguard.heap",
    "Monitor": "vramguard.monitor",
    "ReferencePolicy": "vramguard.pools.references",
    "ReferenceTracker": "vramguard.pools.references",
    "Lease": "vramguard.pools.sessions",
    "PoolError": "vramguard.pools.sessions",
    "PoolExhausted": "vramguard.pools.sessions",
    "SessionPool": "vramguard.pools.sessions",
    "Pressure": "vramguard.pools.staging",
    "StagingAllocationFailed": "vramguard.pools.staging",
    "StagingBudgetExceeded": "vramguard.pools.staging",
    "StagingLease": "vramguard.pools.staging",
    "StagingPool": "vramguard.pools.staging",
    "NoSuchProcess": "vramguard.probes",
    "ProbeStatus": "vramguard.probes",
    "Reading": "vramguard.probes",
    "read": "vramguard.probes",
    "PrometheusError": "vramguard.promhistory",
    "PromSeries": "vramguard.promhistory",
    "RangeQuery": "vramguard.promhistory",
    "read_range": "vramguard.promhistory",
    "LogError": "vramguard.samplelog",
    "SampleLog": "vramguard.samplelog",
    "SampleLogWriter": "vramguard.samplelog",
    "read_log": "vramguard.samplelog",
    "Sampler": "vramguard.sampler",
    "SampleResult": "vramguard.sampler",
    "Criteria": "vramguard.soak",
    "SoakConfig": "vramguard.soak",
    "SoakRunner": "vramguard.soak",
    "LavfiSource": "vramguard.sources",
    "SyntheticSource": "vramguard.sources",
    "LeakAlert": "vramguard.tracker",
    "MemoryTracker": "vramguard.tracker",
    "Sample": "vramguard.tracker",
    "DetectorConfig": "vramguard.trend",
    "LeakDetector": "vramguard.trend",
    "Trend": "vramguard.trend",
    "detect_leak": "vramguard.trend",
    "noise_from": "vramguard.trend",
    "Variogram": "vramguard.noise",
    "likelihood_ratios": "vramguard.wander",
    "ramp_likelihood_ratio": "vramguard.wander",
    "format_bytes": "vramguard.units",
    "parse_duration": "vramguard.units",
    "parse_resolution": "vramguard.units",
    "parse_size": "vramguard.units",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vramguard' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentExporter",
    "BaselinePipeline",
    "BitrateOutOfRange",
    "Criteria",
    "CriterionRow",
    "DetectorConfig",
    "EncoderConfig",
    "EncoderError",
    "EncoderSession",
    "EncoderUnavailable",
    "Fleet",
    "HeapStats",
    "LavfiSource",
    "LeakAlert",
    "LeakDetector",
    "Lease",
    "LogError",
    "LogFormatError",
    "ManagedPipeline",
    "MemoryTracker",
    "MetricsExporter",
    "Monitor",
    "NoSuchProcess",
    "Pipeline",
    "PipelineLedger",
    "PoolError",
    "PoolExhausted",
    "Pressure",
    "ProbeStatus",
    "ProcessInfo",
    "PromSeries",
    "PrometheusError",
    "RangeQuery",
    "Reading",
    "Recorder",
    "ReferencePolicy",
    "ReferenceTracker",
    "Sample",
    "SampleField",
    "SampleLog",
    "SampleLogWriter",
    "SampleResult",
    "Sampler",
    "Selector",
    "SessionPool",
    "SoakConfig",
    "SoakResult",
    "SoakRunner",
    "StagingAllocationFailed",
    "StagingBudgetExceeded",
    "StagingLease",
    "StagingPool",
    "SyntheticSource",
    "Trend",
    "Variogram",
    "VramguardError",
    "__version__",
    "detect_leak",
    "format_bytes",
    "heap_stats",
    "heap_unavailable_reason",
    "likelihood_ratios",
    "noise_from",
    "open_encoder",
    "parse_duration",
    "parse_resolution",
    "parse_size",
    "ramp_likelihood_ratio",
    "read",
    "read_log",
    "read_range",
    "trim_heap",
    "warm_session_bytes",
]
