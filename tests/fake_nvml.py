"""A fake of the pynvml module, at the boundary of the vendor calls.

It has the names vramguard's NVML shim calls, with the same shapes (structs with `.used`,
`.pid`, `.usedGpuMemory`) and the same error class, so the mapping and the version
fallbacks are checked without an NVIDIA driver. Only behaviour that pynvml documents is
faked: an `NVMLError(value)` per failure, `FunctionNotFound` for a call the driver lacks.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25
NOT_AVAILABLE = 2**64 - 1

_NAMES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
}


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _NAMES.get(self.value, f"error {self.value}")


@dataclass
class FakeGpu:
    name: str = "NVIDIA H200"
    used: int = 1 << 30
    total: int = 141 << 30
    compute: list[tuple[int, int]] = field(default_factory=list)  # (pid, used bytes)
    graphics: list[tuple[int, int]] = field(default_factory=list)
    encoder_pids: list[int] = field(default_factory=list)
    encoder_error: int | None = None


class FakeNvml:
    """Stands in for the pynvml module. `versions` says which process-list calls exist."""

    NVMLError = NVMLError
    nvmlMemory_v2 = 0x02000028

    def __init__(
        self,
        gpus: list[FakeGpu] | None = None,
        init_error: int | None = None,
        versions: tuple[str, ...] = ("v3", "v2", "v1"),
        memory_v2: bool = True,
    ) -> None:
        self.gpus = gpus if gpus is not None else [FakeGpu()]
        self.init_error = init_error
        self.versions = versions
        self.memory_v2 = memory_v2
        self.calls: list[str] = []
        self.initialised = 0
        for name, value in globals().items():
            if name.startswith("NVML_"):
                setattr(self, name, value)
        for kind in ("Compute", "Graphics"):
            for version in ("v3", "v2"):
                setattr(
                    self,
                    f"nvmlDeviceGet{kind}RunningProcesses_{version}",
                    self._process_call(kind.lower(), version),
                )

    def nvmlInit(self) -> None:
        self.calls.append("init")
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")
        self.initialised -= 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> str:
        return gpu.name

    def nvmlSystemGetDriverVersion(self) -> str:
        return "570.86.15"

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu, version: int | None = None) -> Any:
        if version is not None:
            self.calls.append("memory_v2")
            if not self.memory_v2:
                raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
        else:
            self.calls.append("memory_v1")
        return SimpleNamespace(used=gpu.used, total=gpu.total, free=gpu.total - gpu.used)

    def _process_call(self, kind: str, version: str) -> Any:
        def call(gpu: FakeGpu) -> list[Any]:
            self.calls.append(f"{kind}_{version}")
            if version not in self.versions:
                raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
            entries = gpu.compute if kind == "compute" else gpu.graphics
            return [
                SimpleNamespace(pid=pid, usedGpuMemory=None if used == NOT_AVAILABLE else used)
                for pid, used in entries
            ]

        return call

    def _nvmlGetFunctionPointer(self, symbol: str) -> Any:
        """The raw C entry point of the v1 process list: (device, count*, array) -> status."""
        if "v1" not in self.versions:
            raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
        kind = "compute" if "Compute" in symbol else "graphics"

        def c_function(gpu: FakeGpu, count: Any, array: Any) -> int:
            self.calls.append(f"{kind}_v1")
            entries = gpu.compute if kind == "compute" else gpu.graphics
            if array is None:
                count.contents.value = len(entries)
                return NVML_SUCCESS if not entries else NVML_ERROR_INSUFFICIENT_SIZE
            if count.contents.value < len(entries):
                return NVML_ERROR_INSUFFICIENT_SIZE
            for i, (pid, used) in enumerate(entries):
                array[i].pid = pid
                array[i].usedGpuMemory = ctypes.c_ulonglong(used).value
            count.contents.value = len(entries)
            return NVML_SUCCESS

        return c_function

    def nvmlDeviceGetEncoderSessions(self, gpu: FakeGpu) -> list[Any]:
        if gpu.encoder_error is not None:
            raise NVMLError(gpu.encoder_error)
        return [SimpleNamespace(pid=pid, sessionId=i) for i, pid in enumerate(gpu.encoder_pids)]
