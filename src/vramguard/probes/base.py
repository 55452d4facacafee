"""The values every probe shares: what a reading holds and how a probe says it cannot read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from vramguard.errors import VramguardError
from vramguard.fields import PROBE_FIELDS

#: Every field a reading may carry, in the order they are shown (see vramguard.fields).
FIELDS: tuple[str, ...] = PROBE_FIELDS

PERMISSION_DENIED = "permission denied"


class NoSuchProcess(VramguardError, LookupError):
    """The process to read does not exist (or ended while it was read)."""

    def __init__(self, pid: int) -> None:
        super().__init__(f"no process with pid {pid}")
        self.pid = pid


@dataclass(frozen=True, slots=True)
class ProbeStatus:
    """Whether a probe can measure anything here, and why not when it cannot."""

    name: str
    available: bool
    reason: str | None = None  # why it is unavailable; None when available
    detail: str | None = None  # what it sees when available, e.g. the devices


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one probe measured of one process: values, and a reason per field it could not."""

    values: Mapping[str, int] = field(default_factory=dict)
    missing: Mapping[str, str] = field(default_factory=dict)


class Probe(Protocol):
    """One source of memory figures (psutil, NVML, DRM fdinfo, PDH/DXGI, Metal/IOKit)."""

    name: str
    fields: tuple[str, ...]

    def status(self) -> ProbeStatus:
        """Whether this probe works here; cheap after the first call."""
        ...

    def read(self, pid: int) -> ProbeResult:
        """Measure one process. Raises NoSuchProcess when it does not exist."""
        ...

    def close(self) -> None:
        """Release what the probe holds (NVML handle, PDH query); idempotent."""
        ...


def unavailable(fields: tuple[str, ...], reason: str) -> ProbeResult:
    """A result in which every field is missing for one reason."""
    return ProbeResult(values={}, missing=dict.fromkeys(fields, reason))
