"""How much memory a process uses, from every source this platform has, psutil-style.

Each source is a probe in its own module (process, nvml, drm, windows, metal) with the same
three calls: `status()`, `read(pid)`, `close()`. `read(pid)` joins them into one `Reading`,
taking each field from the first probe that measured it and naming that probe; a field no
probe could measure is None, with the reasons, never a made-up 0.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vramguard import faults
from vramguard.probes.base import (
    FIELDS,
    PERMISSION_DENIED,
    NoSuchProcess,
    Probe,
    ProbeResult,
    ProbeStatus,
)
from vramguard.probes.drm import DrmProbe
from vramguard.probes.metal import MetalProbe
from vramguard.probes.nvml import NvmlProbe
from vramguard.probes.process import ProcessProbe
from vramguard.probes.windows import WindowsProbe

__all__ = [
    "FIELDS",
    "PERMISSION_DENIED",
    "NoSuchProcess",
    "Probe",
    "ProbeResult",
    "ProbeStatus",
    "Reading",
    "available",
    "close",
    "default_probes",
    "read",
]


@dataclass(frozen=True, slots=True)
class Reading:
    """One reading of one process. Sizes in bytes; None where nothing could measure it."""

    pid: int
    process_gpu_bytes: int | None = None
    device_used_bytes: int | None = None
    device_total_bytes: int | None = None
    encoder_sessions: int | None = None
    host_rss_bytes: int | None = None
    host_uss_bytes: int | None = None
    heap_in_use_bytes: int | None = None
    heap_free_bytes: int | None = None
    open_handles: int | None = None
    threads: int | None = None
    #: the probe behind the GPU figure: per-process where known, else the device's
    source: str | None = None
    #: field -> the probe that measured it
    sources: Mapping[str, str] = field(default_factory=dict)
    #: field -> why it is None ("nvml: no NVIDIA driver; drm: ...")
    unavailable: Mapping[str, str] = field(default_factory=dict)

    def values(self) -> dict[str, int | None]:
        """Every field, in display order."""
        return {name: getattr(self, name) for name in FIELDS}

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary: the fields in bytes, their sources and the reasons."""
        return {
            "pid": self.pid,
            **self.values(),
            "source": self.source,
            "sources": dict(self.sources),
            "unavailable": dict(self.unavailable),
        }


_lock = threading.Lock()
_probes: list[Probe] | None = None


def default_probes() -> list[Probe]:
    """The probes of this process, made once: process first, then GPU sources by preference."""
    global _probes
    with _lock:
        if _probes is None:
            _probes = [ProcessProbe(), NvmlProbe(), DrmProbe(), WindowsProbe(), MetalProbe()]
        return list(_probes)


def close() -> None:
    """Release every default probe (NVML shutdown); the next call starts them again."""
    global _probes
    with _lock:
        probes, _probes = _probes or [], None
    for probe in probes:
        probe.close()


def available(probes: Sequence[Probe] | None = None) -> list[ProbeStatus]:
    """Every probe, whether it can measure here, and why not when it cannot."""
    return [probe.status() for probe in (probes if probes is not None else default_probes())]


def read(pid: int | None = None, probes: Sequence[Probe] | None = None) -> Reading:
    """One reading of a process (default: this one), each field from the best source.

    Raises NoSuchProcess when the process does not exist.
    """
    faults.hit("probe")  # test-only seam: a probe that raises or hangs
    target = os.getpid() if pid is None else pid
    values: dict[str, int] = {}
    sources: dict[str, str] = {}
    reasons: dict[str, list[str]] = {}
    for probe in probes if probes is not None else default_probes():
        result = probe.read(target)
        for name, value in result.values.items():
            if name not in values:
                values[name] = value
                sources[name] = probe.name
        for name, reason in result.missing.items():
            reasons.setdefault(name, []).append(f"{probe.name}: {reason}")
    unavailable = {
        name: "; ".join(reasons.get(name, ["no probe measures this here"]))
        for name in FIELDS
        if name not in values
    }
    source = sources.get("process_gpu_bytes") or sources.get("device_used_bytes")
    return Reading(
        pid=target,
        **{name: values.get(name) for name in FIELDS},
        source=source,
        sources=sources,
        unavailable=unavailable,
    )
