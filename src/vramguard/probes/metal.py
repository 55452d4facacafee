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
        total = 0
        found = False
        try:
            while entry := names["IOIteratorNext"](iterator):
                try:
                    stats = names["IORegistryEntryCreateCFProperty"](
                        entry, "PerformanceStatistics", None, 0
                    )
                    if stats is not None and "In use system memory" in stats:
                        total += int(stats["In use system memory"])
                        found = True
                finally:
                    names["IOObjectRelease"](entry)
        finally:
            names["IOObjectRelease"](iterator)
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
        return ProbeStatus(self.name, True, detail=f"{backend.device_name()}; Metal, IOKit")

    def read(self, pid: int) -> ProbeResult:
        backend = self._start()
        if backend is None:
            return unavailable(self.fields, self._reason or "unavailable")
        values: dict[str, int] = {"device_total_bytes": backend.recommended_max_bytes()}
        missing: dict[str, str] = {}
        if pid == os.getpid():
            values["process_gpu_bytes"] = backend.allocated_bytes()
        else:
            missing["process_gpu_bytes"] = "Metal reports the own process only"
        in_use = backend.device_in_use_bytes()
        if in_use is None:
            missing["device_used_bytes"] = "IOKit PerformanceStatistics not found"
        else:
            values["device_used_bytes"] = in_use
        return ProbeResult(values, missing)

    def close(self) -> None:
        """The Metal device is released with the probe; nothing else is held."""
        self._backend = None
