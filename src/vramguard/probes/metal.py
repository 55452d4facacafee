"""macOS GPU memory: Metal for this process, IOKit's PerformanceStatistics for the device.

`MTLDevice.currentAllocatedSize()` is what this process has allocated on the GPU (Metal
offers no figure for other processes); `recommendedMaxWorkingSetSize()` is the GPU's
budget in unified memory, used as the device size. IOKit's IOAccelerator
`PerformanceStatistics` dictionary gives "In use system memory" for the whole device.

The vendor calls sit behind `MetalBackend`; tests replace it, since this machine is not a Mac.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Protocol

from vramguard.probes.base import ProbeResult, ProbeStatus, unavailable

_FIELDS = ("process_gpu_bytes", "device_used_bytes", "device_total_bytes")


class MetalBackend(Protocol):
    """The Metal and IOKit calls the probe needs."""

    def device_name(self) -> str: ...

    def allocated_bytes(self) -> int:
        """MTLDevice.currentAllocatedSize() of this process."""
        ...

    def recommended_max_bytes(self) -> int:
        """MTLDevice.recommendedMaxWorkingSetSize()."""
        ...

    def device_in_use_bytes(self) -> int | None:
        """IOAccelerator PerformanceStatistics "In use system memory", or None."""
        ...


class _PyObjCBackend:
    """The real calls, through pyobjc's Metal and IOKit bridges."""

    def __init__(self) -> None:
        import Metal

        device = Metal.MTLCreateSystemDefaultDevice()
        if device is None:
            raise LookupError("no Metal device")
        self._device: Any = device

    def device_name(self) -> str:
        return str(self._device.name())

    def allocated_bytes(self) -> int:
        return int(self._device.currentAllocatedSize())

    def recommended_max_bytes(self) -> int:
        return int(self._device.recommendedMaxWorkingSetSize())

    def device_in_use_bytes(self) -> int | None:
        try:
            import objc
            from Foundation import NSBundle
        except ImportError:
            return None
        iokit = NSBundle.bundleWithIdentifier_("com.apple.framework.IOKit")
        functions = [
            ("IOServiceMatching", b"@*"),
            ("IOServiceGetMatchingServices", b"iI@o^I"),
            ("IOIteratorNext", b"II"),
            ("IORegistryEntryCreateCFProperty", b"@I@@I"),
            ("IOObjectRelease", b"iI"),
        ]
        names: dict[str, Any] = {}
        objc.loadBundleFunctions(iokit, names, functions)
        status, iterator = names["IOServiceGetMatchingServices"](
            0, names["IOServiceMatching"](b"IOAccelerator"), None
        )
        if status != 0:
            return None
        found: list[Any] = []
        try:
            while entry := names["IOIteratorNext"](iterator):
                try:
                    found.append(
                        names["IORegistryEntryCreateCFProperty"](
                            entry, "PerformanceStatistics", None, 0
                        )
                    )
                finally:
                    names["IOObjectRelease"](entry)
        finally:
            names["IOObjectRelease"](iterator)
        return in_use_bytes(found)


#: PerformanceStatistics keys for memory in use, by accelerator: Apple silicon (AGX) first
IN_USE_KEYS = ("In use system memory", "vramUsedBytes", "inUseVidMemoryBytes")


def in_use_bytes(statistics: list[Any]) -> int | None:
    """Memory in use summed over IOAccelerators' PerformanceStatistics dictionaries (None
    entries skipped); None when no accelerator reports one of IN_USE_KEYS."""
    total = 0
    found = False
    for stats in statistics:
        if stats is None:
            continue
        key = next((k for k in IN_USE_KEYS if k in stats), None)
        if key is not None:
            total += int(stats[key])
            found = True
    return total if found else None


class MetalProbe:
    """GPU memory on macOS through Metal (this process) and IOKit (the device)."""

    name: str = "metal"
    fields: tuple[str, ...] = _FIELDS

    def __init__(self, backend: MetalBackend | None = None, platform: str = sys.platform) -> None:
        self._backend = backend
        self._platform = platform
        self._reason: str | None = None

    def _start(self) -> MetalBackend | None:
        if self._backend is not None or self._reason is not None:
            return self._backend
        if self._platform != "darwin":
            self._reason = f"Metal exists on macOS only, not {self._platform}"
            return None
        try:
            self._backend = _PyObjCBackend()
        except ImportError:
            self._reason = "pyobjc-framework-Metal is not installed"
        except LookupError as exc:
            self._reason = str(exc)
        return self._backend

    def status(self) -> ProbeStatus:
        backend = self._start()
        if backend is None:
            return ProbeStatus(self.name, False, reason=self._reason)
        try:
            name = backend.device_name()
        except Exception as exc:  # objc.error: a reason, not a crash
            return ProbeStatus(self.name, False, reason=f"Metal failed: {exc}")
        return ProbeStatus(self.name, True, detail=f"{name}; Metal, IOKit")

    def read(self, pid: int) -> ProbeResult:
        backend = self._start()
        if backend is None:
            return unavailable(self.fields, self._reason or "unavailable")
        values: dict[str, int] = {}
        missing: dict[str, str] = {}
        calls: list[tuple[str, Any]] = [
            ("device_total_bytes", backend.recommended_max_bytes),
            ("device_used_bytes", backend.device_in_use_bytes),
        ]
        if pid == os.getpid():
            calls.append(("process_gpu_bytes", backend.allocated_bytes))
        else:
            missing["process_gpu_bytes"] = "Metal reports the own process only"
        for field, call in calls:
            try:
                value = call()
            except Exception as exc:  # objc.error and the like: this field only
                missing[field] = f"Metal/IOKit failed: {exc}"
                continue
            if value is None:
                missing[field] = "IOKit PerformanceStatistics not found"
            else:
                values[field] = int(value)
        return ProbeResult(values, missing)

    def close(self) -> None:
        """The Metal device is released with the probe; nothing else is held."""
        self._backend = None
