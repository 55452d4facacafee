"""NVIDIA GPUs through NVML (nvidia-ml-py), on Linux and Windows.

One shim holds every NVML call, as nvitop does: NVML is started lazily on first use, each
vendor error becomes a reason ("unavailable: Driver Not Loaded"), and the version fallbacks
(memory info v2 then v1; process lists v3, v2, v1) live here and nowhere else.

Per-process memory comes from the compute and graphics process lists. A process with both
a CUDA and a graphics context is listed in both with the same figure, so the larger of the
two counts per device, and devices add up. NVML lists host PIDs: inside a PID namespace
(a container) a process may be absent from the lists even though it uses the GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vramguard.probes.base import PERMISSION_DENIED, ProbeResult, ProbeStatus, unavailable

_FIELDS = ("process_gpu_bytes", "device_used_bytes", "device_total_bytes", "encoder_sessions")


class NvmlUnavailable(Exception):
    """An NVML call failed; the message is the human reason."""


class _ProcessInfoV1(ctypes.Structure):
    """nvmlProcessInfo_v1_t, for drivers older than the v2 process list (R470 and before)."""

    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]


@dataclass(frozen=True, slots=True)
class _Process:
    pid: int
    used_bytes: int | None  # None where NVML cannot tell (Windows WDDM)


def _in_pid_namespace(status_path: str = "/proc/self/status") -> bool:
    """True when this process runs in a nested PID namespace (NVML reports host PIDs)."""
    try:
        with open(status_path, encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("NSpid:"):
                    return len(line.split()) > 2
    except OSError:
        return False
    return False


class NvmlProbe:
    """NVIDIA device memory, per-process memory and NVENC sessions."""

    name: str = "nvml"
    fields: tuple[str, ...] = _FIELDS

    def __init__(
        self,
        library: Any | None = None,
        in_pid_namespace: Callable[[], bool] = _in_pid_namespace,
    ) -> None:
        """`library` is the pynvml module (or a fake of it); imported on first use when None."""
        self._lib: Any = library
        self._in_pid_namespace = in_pid_namespace
        self._lock = threading.Lock()
        self._handles: list[Any] | None = None
        self._names: list[str] = []
        self._driver = ""
        self._reason: str | None = None
        self.process_list_version: str | None = None  # which process list API answered

    # -- start and stop -------------------------------------------------------------------

    def _start(self) -> list[Any]:
        """Initialise NVML once; raises NvmlUnavailable with the reason when it cannot."""
        with self._lock:
            if self._handles is not None:
                return self._handles
            if self._reason is not None:
                raise NvmlUnavailable(self._reason)
            try:
                if self._lib is None:
                    try:
                        import pynvml
                    except ImportError:
                        raise NvmlUnavailable("nvidia-ml-py is not installed") from None
                    self._lib = pynvml
                self._call(self._lib.nvmlInit)
                try:
                    count = int(self._call(self._lib.nvmlDeviceGetCount))
                    handles = [
                        self._call(self._lib.nvmlDeviceGetHandleByIndex, i) for i in range(count)
                    ]
                    self._names = [self._text(self._lib.nvmlDeviceGetName(h)) for h in handles]
                    self._driver = self._text(self._lib.nvmlSystemGetDriverVersion())
                except Exception:
                    self._lib.nvmlShutdown()
                    raise
                if not handles:
                    self._lib.nvmlShutdown()
                    raise NvmlUnavailable("no NVIDIA GPU found")
            except NvmlUnavailable as exc:
                self._reason = str(exc)
                raise
            self._handles = handles
            return handles

    def close(self) -> None:
        """Shut NVML down if this probe started it; idempotent."""
        with self._lock:
            if self._handles is not None and self._lib is not None:
                with contextlib.suppress(Exception):
                    self._lib.nvmlShutdown()
            self._handles = None

    # -- the shim -------------------------------------------------------------------------

    def _reason_for(self, exc: BaseException) -> str:
        lib = self._lib
        value = getattr(exc, "value", None)
        if value == getattr(lib, "NVML_ERROR_LIBRARY_NOT_FOUND", None):
            return "no NVIDIA driver (NVML library not found)"
        if value == getattr(lib, "NVML_ERROR_DRIVER_NOT_LOADED", None):
            return "NVIDIA driver not loaded"
        if value == getattr(lib, "NVML_ERROR_NO_PERMISSION", None):
            return PERMISSION_DENIED
        if value == getattr(lib, "NVML_ERROR_NOT_SUPPORTED", None):
            return "not supported by this GPU or driver"
        return f"NVML error: {exc}"

    def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return function(*args)
        except Exception as exc:
            if self._lib is not None and isinstance(exc, self._lib.NVMLError):
                raise NvmlUnavailable(self._reason_for(exc)) from exc
            raise

    def _is_missing_function(self, exc: BaseException) -> bool:
        lib = self._lib
        value = getattr(exc, "value", None)
        return value in (
            getattr(lib, "NVML_ERROR_FUNCTION_NOT_FOUND", object()),
            getattr(lib, "NVML_ERROR_ARGUMENT_VERSION_MISMATCH", object()),
        )

    @staticmethod
    def _text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    def _memory(self, handle: Any) -> tuple[int, int]:
        """(used, total) bytes: memory info v2 where the driver has it, else v1."""
        lib = self._lib
        version = getattr(lib, "nvmlMemory_v2", None)
        if version is not None:
            try:
                info = lib.nvmlDeviceGetMemoryInfo(handle, version=version)
                return int(info.used), int(info.total)
            except lib.NVMLError as exc:
                if not self._is_missing_function(exc):
                    raise NvmlUnavailable(self._reason_for(exc)) from exc
        info = self._call(lib.nvmlDeviceGetMemoryInfo, handle)
        return int(info.used), int(info.total)

    def _processes(self, handle: Any, kind: str) -> list[_Process]:
        """One process list ("Compute" or "Graphics"): v3, then v2, then v1."""
        lib = self._lib
        base = f"nvmlDeviceGet{kind}RunningProcesses"
        for version in ("v3", "v2"):
            function = getattr(lib, f"{base}_{version}", None)
            if function is None:
                continue
            try:
                entries = function(handle)
            except lib.NVMLError as exc:
                if self._is_missing_function(exc):
                    continue
                raise NvmlUnavailable(self._reason_for(exc)) from exc
            self.process_list_version = version
            return [_Process(int(p.pid), self._used(p.usedGpuMemory)) for p in entries]
        self.process_list_version = "v1"
        return self._processes_v1(handle, base)

    def _processes_v1(self, handle: Any, symbol: str) -> list[_Process]:
        lib = self._lib
        function = self._call(lib._nvmlGetFunctionPointer, symbol)
        count = ctypes.c_uint(0)
        result = function(handle, ctypes.pointer(count), None)
        if result == lib.NVML_SUCCESS:
            return []
        if result != lib.NVML_ERROR_INSUFFICIENT_SIZE:
            raise NvmlUnavailable(self._reason_for(lib.NVMLError(result)))
        count.value = count.value * 2 + 5
        array = (_ProcessInfoV1 * count.value)()
        result = function(handle, ctypes.pointer(count), array)
        if result != lib.NVML_SUCCESS:
            raise NvmlUnavailable(self._reason_for(lib.NVMLError(result)))
        return [
            _Process(int(array[i].pid), self._used(array[i].usedGpuMemory))
            for i in range(count.value)
        ]

    @staticmethod
    def _used(value: int | None) -> int | None:
        # NVML_VALUE_NOT_AVAILABLE (all ones) means "not reported", as under Windows WDDM.
        if value is None or value >= 2**64 - 1:
            return None
        return int(value)

    def _encoder_sessions(self, handle: Any, pid: int) -> int:
        sessions = self._call(self._lib.nvmlDeviceGetEncoderSessions, handle)
        return sum(1 for session in sessions if int(session.pid) == pid)

    # -- the probe ------------------------------------------------------------------------

    def status(self) -> ProbeStatus:
        try:
            handles = self._start()
        except NvmlUnavailable as exc:
            return ProbeStatus(self.name, False, reason=str(exc))
        names = ", ".join(self._names)
        detail = f"{len(handles)} GPU(s): {names}; driver {self._driver}"
        return ProbeStatus(self.name, True, detail=detail)

    def read(self, pid: int) -> ProbeResult:
        try:
            handles = self._start()
        except NvmlUnavailable as exc:
            return unavailable(self.fields, str(exc))
        values: dict[str, int] = {}
        missing: dict[str, str] = {}
        used_by_process, process_devices, reason = self._process_memory(handles, pid)
        if used_by_process is not None:
            values["process_gpu_bytes"] = used_by_process
        else:
            missing["process_gpu_bytes"] = reason or "unknown"
        devices = process_devices or list(range(len(handles)))
        self._device_memory([handles[i] for i in devices], values, missing)
        try:
            values["encoder_sessions"] = sum(self._encoder_sessions(h, pid) for h in handles)
        except NvmlUnavailable as exc:
            missing["encoder_sessions"] = str(exc)
        return ProbeResult(values, missing)

    def _process_memory(
        self, handles: Sequence[Any], pid: int
    ) -> tuple[int | None, list[int], str | None]:
        """(bytes the process holds, indices of the devices it uses, reason when unknown)."""
        total = 0
        devices: list[int] = []
        for index, handle in enumerate(handles):
            try:
                listed = [
                    p
                    for kind in ("Compute", "Graphics")
                    for p in self._processes(handle, kind)
                    if p.pid == pid
                ]
            except NvmlUnavailable as exc:
                return None, devices, str(exc)
            if not listed:
                continue
            devices.append(index)
            if any(p.used_bytes is None for p in listed):
                return None, devices, "NVML does not report per-process memory here (WDDM)"
            total += max(p.used_bytes or 0 for p in listed)
        if not devices and self._in_pid_namespace():
            return None, devices, "not listed; NVML lists host PIDs and this runs in a container"
        return total, devices, None

    def _device_memory(
        self, handles: Sequence[Any], values: dict[str, int], missing: dict[str, str]
    ) -> None:
        used = total = 0
        for handle in handles:
            try:
                device_used, device_total = self._memory(handle)
            except NvmlUnavailable as exc:
                missing["device_used_bytes"] = missing["device_total_bytes"] = str(exc)
                return
            used += device_used
            total += device_total
        values["device_used_bytes"] = used
        values["device_total_bytes"] = total
