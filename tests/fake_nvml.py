"""A fake of the pynvml module (nvidia-ml-py), at the boundary of the vendor calls.

It has the names vramguard's NVML shim calls, with the same shapes (structs with `.used`,
`.pid`, `.usedGpuMemory`) and fails as pynvml does (read from nvidia-ml-py 13's source):

- `NVMLError(value)` builds the subclass of that code (`NVMLError_GpuIsLost`, ...);
- every call before `nvmlInit` or after the matching `nvmlShutdown` raises
  `NVMLError_Uninitialized` (NVML counts inits; `nvmlShutdown` when not initialised raises too);
- the raw v1 process-list entry point answers `NVML_ERROR_INSUFFICIENT_SIZE` with the count
  set to what it needs, on the sizing call and on a second call with too small an array;
- a versioned call the driver lacks raises `NVML_ERROR_FUNCTION_NOT_FOUND`;
- any call can be made to fail with any code: `fail("nvmlDeviceGetName", GPU_IS_LOST)`.

`calls` records each call by its pynvml name, so a test can inject an error at every call a
normal reading makes.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, ClassVar

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25
NVML_ERROR_UNKNOWN = 999
NOT_AVAILABLE = 2**64 - 1

_NAMES = {  # pynvml's NVMLError._errcode_to_string, for the codes above
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_INSUFFICIENT_SIZE: "Insufficient Size",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_TIMEOUT: "Timeout",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_RESET_REQUIRED: "GPU requires restart",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """pynvml's error: `NVMLError(code)` is an instance of that code's subclass."""

    _by_value: ClassVar[dict[int, type[NVMLError]]] = {}
    value: int

    def __new__(cls, value: int) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._by_value.get(value, NVMLError)
        error = Exception.__new__(cls)
        error.value = value
        return error

    def __init__(self, value: int) -> None:
        super().__init__(value)

    def __str__(self) -> str:
        return _NAMES.get(self.value, f"NVML Error with code {self.value}")


def _error_classes() -> dict[str, type[NVMLError]]:
    classes = {}
    for name, value in list(globals().items()):
        if name.startswith("NVML_ERROR_"):
            words = name.removeprefix("NVML_ERROR_").split("_")
            class_name = "NVMLError_" + "".join(w.capitalize() for w in words)
            classes[class_name] = type(class_name, (NVMLError,), {})
            NVMLError._by_value[value] = classes[class_name]
    return classes


_CLASSES = _error_classes()
NVMLError_Uninitialized = _CLASSES["NVMLError_Uninitialized"]
NVMLError_GpuIsLost = _CLASSES["NVMLError_GpuIsLost"]


@dataclass
class FakeGpu:
    name: str = "NVIDIA H200"
    used: int = 1 << 30
    total: int = 141 << 30
    compute: list[tuple[int, int]] = field(default_factory=list)  # (pid, used bytes)
    graphics: list[tuple[int, int]] = field(default_factory=list)
    encoder_pids: list[int] = field(default_factory=list)


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
        self.versions = versions
        self.memory_v2 = memory_v2
        self.calls: list[str] = []
        self.initialised = 0  # NVML's reference count of inits
        self._failures: dict[str, tuple[int, int | None]] = {}  # call -> (code, times left)
        if init_error is not None:
            self.fail("nvmlInit", init_error)
        for name, value in globals().items():
            if name.startswith(("NVML_", "NVMLError_")):
                setattr(self, name, value)
        for class_name, error_class in _CLASSES.items():
            setattr(self, class_name, error_class)
        for kind in ("Compute", "Graphics"):
            for version in ("v3", "v2"):
                setattr(
                    self,
                    f"nvmlDeviceGet{kind}RunningProcesses_{version}",
                    self._process_call(kind, version),
                )

    # -- failing on cue -------------------------------------------------------------------

    def fail(self, call: str, code: int, times: int | None = None) -> None:
        """Make `call` (a pynvml name, or a raw v1 symbol) fail with `code`: `times` calls,
        or every call when None."""
        self._failures[call] = (code, times)

    def _enter(self, call: str, needs_init: bool = True) -> None:
        """What every pynvml call does first: record it, fail on cue, refuse when NVML is
        not initialised."""
        self.calls.append(call)
        failure = self._failures.get(call)
        if failure is not None:
            code, times = failure
            if times is not None:
                if times <= 1:
                    del self._failures[call]
                else:
                    self._failures[call] = (code, times - 1)
            raise NVMLError(code)
        if needs_init and self.initialised <= 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    # -- the calls ------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self._enter("nvmlInit", needs_init=False)
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialised -= 1

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._enter("nvmlDeviceGetHandleByIndex")
        return self.gpus[index]

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> str:
        self._enter("nvmlDeviceGetName")
        return gpu.name

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return "570.86.15"

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu, version: int | None = None) -> Any:
        if version is not None:
            self._enter("nvmlDeviceGetMemoryInfo_v2")
            if not self.memory_v2:
                raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
        else:
            self._enter("nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(used=gpu.used, total=gpu.total, free=gpu.total - gpu.used)

    def _process_call(self, kind: str, version: str) -> Any:
        name = f"nvmlDeviceGet{kind}RunningProcesses_{version}"

        def call(gpu: FakeGpu) -> list[Any]:
            self._enter(name)
            if version not in self.versions:
                raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
            entries = gpu.compute if kind == "Compute" else gpu.graphics
            # pynvml turns NVML_VALUE_NOT_AVAILABLE (WDDM) into None
            return [
                SimpleNamespace(pid=pid, usedGpuMemory=None if used == NOT_AVAILABLE else used)
                for pid, used in entries
            ]

        return call

    def _nvmlGetFunctionPointer(self, symbol: str) -> Any:
        """The raw C entry point of the v1 process list: (device, count*, array) -> status."""
        self._enter("_nvmlGetFunctionPointer", needs_init=False)
        if "v1" not in self.versions:
            raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
        kind = "Compute" if "Compute" in symbol else "Graphics"

        def c_function(gpu: FakeGpu, count: Any, array: Any) -> int:
            try:
                self._enter(symbol)
            except NVMLError as exc:  # a C function returns its error code
                return exc.value
            entries = gpu.compute if kind == "Compute" else gpu.graphics
            needed = len(entries)
            if array is None or count.contents.value < needed:
                # NVML sets the count to what it needs; SUCCESS when nothing is listed
                count.contents.value = needed
                return NVML_SUCCESS if needed == 0 else NVML_ERROR_INSUFFICIENT_SIZE
            for i, (pid, used) in enumerate(entries):
                array[i].pid = pid
                array[i].usedGpuMemory = ctypes.c_ulonglong(used).value
            count.contents.value = needed
            return NVML_SUCCESS

        return c_function

    def nvmlDeviceGetEncoderSessions(self, gpu: FakeGpu) -> list[Any]:
        self._enter("nvmlDeviceGetEncoderSessions")
        return [SimpleNamespace(pid=pid, sessionId=i) for i, pid in enumerate(gpu.encoder_pids)]
