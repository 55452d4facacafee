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

from vramguard.errors import VramguardError
from vramguard.probes.base import PERMISSION_DENIED, ProbeResult, ProbeStatus, unavailable

_FIELDS = ("process_gpu_bytes", "device_used_bytes", "device_total_bytes", "encoder_sessions")


class NvmlUnavailable(VramguardError):
    """An NVML call failed; the message is the human reason."""


class _ProcessInfoV1(ctypes.Structure):
    """nvmlProcessInfo_v1_t, for drivers older than the v2 process list (R470 and before)."""

    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]


@dataclass(frozen=True, slots=True)
class NvmlUsage:
    """Every process on every device, read at once: what an agent watching many needs."""

    process_bytes: dict[int, int | None]  # pid -> bytes over its devices (None: WDDM)
    process_devices: dict[int, tuple[int, ...]]  # pid -> indices of the devices it uses
    device_used: tuple[int, ...]
    device_total: tuple[int, ...]
    encoder_sessions: dict[int, int]  # pid -> NVENC sessions; empty when unsupported


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
    """NVIDIA device memory, per-process memory and NVENC sessions.

    NVML is initialised once, at first use; a failure to start is remembered, so a machine
    without a driver is not asked again on every reading. Every vendor call goes through one
    guard: an `NVMLError` anywhere becomes an unavailable status or a missing field with its
    reason, never an exception. A GPU that is lost (or a driver that goes away) mid-run
    makes the probe unavailable from then on, NVML shut down, until `close()`.
    """

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
        self._memory_version: str | None = None  # "v2" or "v1", resolved at first use
        self.process_list_version: str | None = None  # "v3", "v2" or "v1", resolved once

    # -- start and stop -------------------------------------------------------------------

    def _start(self) -> list[Any]:
        """Initialise NVML once; raises NvmlUnavailable with the reason when it cannot, and
        remembers that reason."""
        with self._lock:
            if self._handles is not None:
                return self._handles
            if self._reason is not None:
                raise NvmlUnavailable(self._reason)
            try:
                self._handles = self._initialise()
            except NvmlUnavailable as exc:
                self._reason = str(exc)
                raise
            return self._handles

    def _initialise(self) -> list[Any]:
        if self._lib is None:
            try:
                import pynvml
            except ImportError:
                raise NvmlUnavailable("nvidia-ml-py is not installed") from None
            self._lib = pynvml
        lib = self._lib
        self._call(lib.nvmlInit)
        try:
            count = int(self._call(lib.nvmlDeviceGetCount))
            handles = [self._call(lib.nvmlDeviceGetHandleByIndex, i) for i in range(count)]
            self._names = [self._text(self._call(lib.nvmlDeviceGetName, h)) for h in handles]
            self._driver = self._text(self._call(lib.nvmlSystemGetDriverVersion))
            if not handles:
                raise NvmlUnavailable("no NVIDIA GPU found")
        except NvmlUnavailable:
            self._shutdown()
            raise
        return handles

    def _shutdown(self) -> None:
        """nvmlShutdown, once per successful nvmlInit; its own errors change nothing."""
        with contextlib.suppress(Exception):
            self._lib.nvmlShutdown()

    def _lost(self, exc: NvmlUnavailable) -> None:
        """A call found the GPU or the driver gone: stop using NVML and say why from now on."""
        with self._lock:
            if self._handles is not None:
                self._shutdown()
            self._handles = None
            self._reason = str(exc)

    def close(self) -> None:
        """Shut NVML down if this probe started it; idempotent. A later call starts again."""
        with self._lock:
            if self._handles is not None and self._lib is not None:
                self._shutdown()
            self._handles = None
            self._reason = None

    # -- the shim -------------------------------------------------------------------------

    def _code(self, name: str) -> Any:
        return getattr(self._lib, name, object())

    def _reason_for(self, exc: BaseException) -> str:
        value = getattr(exc, "value", None)
        if value == self._code("NVML_ERROR_LIBRARY_NOT_FOUND"):
            return "no NVIDIA driver (NVML library not found)"
        if value == self._code("NVML_ERROR_DRIVER_NOT_LOADED"):
            return "NVIDIA driver not loaded"
        if value == self._code("NVML_ERROR_NO_PERMISSION"):
            return PERMISSION_DENIED
        if value == self._code("NVML_ERROR_NOT_SUPPORTED"):
            return "not supported by this GPU or driver"
        if value == self._code("NVML_ERROR_GPU_IS_LOST"):
            return "GPU is lost (NVML_ERROR_GPU_IS_LOST)"
        return f"NVML error: {exc}"

    def _is_fatal(self, exc: NvmlUnavailable) -> bool:
        """Errors after which no later call can succeed until NVML starts again."""
        value = getattr(exc.__cause__, "value", None)
        return value in {
            self._code(name)
            for name in (
                "NVML_ERROR_GPU_IS_LOST",
                "NVML_ERROR_UNINITIALIZED",
                "NVML_ERROR_DRIVER_NOT_LOADED",
                "NVML_ERROR_LIBRARY_NOT_FOUND",
                "NVML_ERROR_RESET_REQUIRED",
            )
        }

    def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One vendor call: an NVMLError becomes NvmlUnavailable with its reason."""
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            if self._lib is not None and isinstance(exc, self._lib.NVMLError):
                raise NvmlUnavailable(self._reason_for(exc)) from exc
            raise

    def _is_missing_function(self, exc: NvmlUnavailable) -> bool:
        value = getattr(exc.__cause__, "value", None)
        return value in (
            self._code("NVML_ERROR_FUNCTION_NOT_FOUND"),
            self._code("NVML_ERROR_ARGUMENT_VERSION_MISMATCH"),
        )

    @staticmethod
    def _text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    def _memory(self, handle: Any) -> tuple[int, int]:
        """(used, total) bytes: memory info v2 where the driver has it, else v1 (resolved at
        the first call and kept)."""
        lib = self._lib
        version = getattr(lib, "nvmlMemory_v2", None)
        if self._memory_version is None:
            self._memory_version = "v1" if version is None else "v2"
        if self._memory_version == "v2":
            try:
                info = self._call(lib.nvmlDeviceGetMemoryInfo, handle, version=version)
                return int(info.used), int(info.total)
            except NvmlUnavailable as exc:
                if not self._is_missing_function(exc):
                    raise
                self._memory_version = "v1"
        info = self._call(lib.nvmlDeviceGetMemoryInfo, handle)
        return int(info.used), int(info.total)

    def _processes(self, handle: Any, kind: str) -> list[_Process]:
        """One process list ("Compute" or "Graphics"). The first call finds the newest the
        driver answers, v3, v2, then v1, and later calls go straight to it."""
        base = f"nvmlDeviceGet{kind}RunningProcesses"
        if self.process_list_version is not None:
            return self._processes_of(handle, base, self.process_list_version)
        for version in ("v3", "v2", "v1"):
            try:
                processes = self._processes_of(handle, base, version)
            except NvmlUnavailable as exc:
                if version != "v1" and self._is_missing_function(exc):
                    continue
                raise
            self.process_list_version = version
            return processes
        raise AssertionError("unreachable: v1 returns or raises")

    def _processes_of(self, handle: Any, base: str, version: str) -> list[_Process]:
        if version == "v1":
            return self._processes_v1(handle, base)
        function = getattr(self._lib, f"{base}_{version}", None)
        if function is None:  # bindings older than the driver: as if the driver lacked it
            cause = self._lib.NVMLError(self._code("NVML_ERROR_FUNCTION_NOT_FOUND"))
            raise NvmlUnavailable(self._reason_for(cause)) from cause
        entries = self._call(function, handle)
        return [_Process(int(p.pid), self._used(p.usedGpuMemory)) for p in entries]

    def _processes_v1(self, handle: Any, symbol: str) -> list[_Process]:
        """The v1 list through the raw C entry point (pynvml's own wrapper asks for v3)."""
        lib = self._lib
        function = self._call(lib._nvmlGetFunctionPointer, symbol)
        count = ctypes.c_uint(0)
        result = function(handle, ctypes.pointer(count), None)
        if result == lib.NVML_SUCCESS:
            return []
        for _ in range(3):  # the list may grow between the sizing call and the read
            if result != lib.NVML_ERROR_INSUFFICIENT_SIZE:
                break
            count.value = count.value * 2 + 5
            array = (_ProcessInfoV1 * count.value)()
            result = function(handle, ctypes.pointer(count), array)
            if result == lib.NVML_SUCCESS:
                return [
                    _Process(int(array[i].pid), self._used(array[i].usedGpuMemory))
                    for i in range(count.value)
                ]
        cause = lib.NVMLError(result)
        raise NvmlUnavailable(self._reason_for(cause)) from cause

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
        try:
            return self._read(handles, pid)
        except NvmlUnavailable as exc:  # only the fatal ones reach here
            self._lost(exc)
            return unavailable(self.fields, str(exc))

    def usage(self) -> NvmlUsage | str:
        """Every process of every device in one pass (two process lists, the memory and
        the encoder sessions per device, whatever the number of processes), or the reason
        NVML cannot say."""
        try:
            handles = self._start()
        except NvmlUnavailable as exc:
            return str(exc)
        try:
            return self._usage(handles)
        except NvmlUnavailable as exc:
            if self._is_fatal(exc):
                self._lost(exc)
            return str(exc)

    def _usage(self, handles: Sequence[Any]) -> NvmlUsage:
        process_bytes: dict[int, int | None] = {}
        devices: dict[int, tuple[int, ...]] = {}
        used: list[int] = []
        total: list[int] = []
        sessions: dict[int, int] = {}
        for index, handle in enumerate(handles):
            on_device: dict[int, int | None] = {}
            for kind in ("Compute", "Graphics"):
                for p in self._processes(handle, kind):  # listed in both: the larger counts
                    before = on_device.get(p.pid, 0)
                    on_device[p.pid] = (
                        None if p.used_bytes is None or before is None
                        else max(before, p.used_bytes)
                    )  # fmt: skip
            for pid, amount in on_device.items():
                before = process_bytes.get(pid, 0)
                process_bytes[pid] = None if amount is None or before is None else before + amount
                devices[pid] = (*devices.get(pid, ()), index)
            device_used, device_total = self._memory(handle)
            used.append(device_used)
            total.append(device_total)
            try:
                for session in self._call(self._lib.nvmlDeviceGetEncoderSessions, handle):
                    sessions[int(session.pid)] = sessions.get(int(session.pid), 0) + 1
            except NvmlUnavailable as exc:
                self._raise_if_fatal(exc)
        return NvmlUsage(process_bytes, devices, tuple(used), tuple(total), sessions)

    def _read(self, handles: Sequence[Any], pid: int) -> ProbeResult:
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
            self._raise_if_fatal(exc)
            missing["encoder_sessions"] = str(exc)
        return ProbeResult(values, missing)

    def _raise_if_fatal(self, exc: NvmlUnavailable) -> None:
        if self._is_fatal(exc):
            raise exc

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
                self._raise_if_fatal(exc)
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
                self._raise_if_fatal(exc)
                missing["device_used_bytes"] = missing["device_total_bytes"] = str(exc)
                return
            used += device_used
            total += device_total
        values["device_used_bytes"] = used
        values["device_total_bytes"] = total
