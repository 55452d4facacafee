"""Windows GPU memory: PDH "GPU Process Memory" counters for any process, DXGI for adapters.

PDH (the counters Task Manager shows) reports each process's `Dedicated Usage` (VRAM) and
`Shared Usage` (system memory the GPU maps, where staging textures live) per adapter
instance `pid_<PID>_luid_..._phys_N`; the process's GPU memory is both summed over its
instances. Device use is `\\GPU Adapter Memory(*)\\Dedicated Usage`; device size is the
adapters' `DedicatedVideoMemory` from DXGI (software adapters left out). DXGI's
`IDXGIAdapter3::QueryVideoMemoryInfo` (CurrentUsage, Budget) speaks for this process only
and stands in when PDH has no instance for it.

The vendor calls sit behind `WindowsBackend`; tests replace it, since this machine is not
Windows.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any, Protocol

from vramguard.probes.base import PERMISSION_DENIED, ProbeResult, ProbeStatus, unavailable

_FIELDS = ("process_gpu_bytes", "device_used_bytes", "device_total_bytes")


class WindowsBackend(Protocol):
    """The PDH and DXGI calls the probe needs."""

    def process_memory(self, pid: int) -> tuple[int, int] | None:
        """(dedicated, shared) bytes over the process's adapter instances; None if none."""
        ...

    def adapter_dedicated_usage(self) -> int | None:
        """Dedicated bytes in use over all adapters (PDH), or None."""
        ...

    def adapters_dedicated_total(self) -> int | None:
        """DedicatedVideoMemory summed over the hardware adapters (DXGI), or None."""
        ...

    def own_process_usage(self) -> list[tuple[int, int]]:
        """(CurrentUsage, Budget) of local memory per hardware adapter, this process (DXGI)."""
        ...


#: ERROR_ACCESS_DENIED, and PDH_ACCESS_DENIED (0xC0000BDB) as pywintypes gives it, signed
_ACCESS_DENIED_CODES = frozenset({5, 0xC0000BDB, 0xC0000BDB - 2**32})


def _is_access_denied(exc: BaseException) -> bool:
    """Whether a pywintypes.error (`winerror`, `funcname`, `strerror`) means access denied."""
    code = getattr(exc, "winerror", None)
    if code is None and exc.args and isinstance(exc.args[0], int):
        code = exc.args[0]  # pywintypes.error's args are (winerror, funcname, strerror)
    return code in _ACCESS_DENIED_CODES


class _PdhDxgiBackend:
    """The real calls: win32pdh from pywin32, and DXGI through its COM vtable with ctypes."""

    def __init__(self) -> None:
        import win32pdh

        self._pdh: Any = win32pdh

    def _pdh_sum(self, pattern: str) -> int | None:
        pdh = self._pdh
        try:
            paths = pdh.ExpandCounterPath(pattern)
        except Exception as exc:  # pywintypes.error: no such instance, or access denied
            if _is_access_denied(exc):
                raise PermissionError(PERMISSION_DENIED) from exc
            return None
        if not paths:
            return None
        query = pdh.OpenQuery()
        try:
            counters = [pdh.AddCounter(query, path) for path in paths]
            pdh.CollectQueryData(query)
            return sum(int(pdh.GetFormattedCounterValue(c, pdh.PDH_FMT_LARGE)[1]) for c in counters)
        finally:
            pdh.CloseQuery(query)

    def process_memory(self, pid: int) -> tuple[int, int] | None:
        dedicated = self._pdh_sum(rf"\GPU Process Memory(pid_{pid}_*)\Dedicated Usage")
        shared = self._pdh_sum(rf"\GPU Process Memory(pid_{pid}_*)\Shared Usage")
        if dedicated is None and shared is None:
            return None
        return dedicated or 0, shared or 0

    def adapter_dedicated_usage(self) -> int | None:
        return self._pdh_sum(r"\GPU Adapter Memory(*)\Dedicated Usage")

    def adapters_dedicated_total(self) -> int | None:
        adapters = _dxgi_adapters()
        return sum(a[0] for a in adapters) if adapters else None

    def own_process_usage(self) -> list[tuple[int, int]]:
        return [(usage, budget) for _, usage, budget in _dxgi_adapters()]


class _Guid(ctypes.Structure):
    _fields_ = [
        ("data1", ctypes.c_uint32),
        ("data2", ctypes.c_uint16),
        ("data3", ctypes.c_uint16),
        ("data4", ctypes.c_ubyte * 8),
    ]

    @classmethod
    def parse(cls, text: str) -> _Guid:
        """A GUID from its text form ("770aae78-f26f-4dba-a829-253c83d1b387")."""
        hexes = text.strip("{}").replace("-", "")
        if len(hexes) != 32:
            raise ValueError(f"not a GUID: {text!r}")
        tail = bytes.fromhex(hexes[16:])
        return cls(
            int(hexes[:8], 16),
            int(hexes[8:12], 16),
            int(hexes[12:16], 16),
            (ctypes.c_ubyte * 8)(*tail),
        )


class _AdapterDesc1(ctypes.Structure):
    _fields_ = [
        ("Description", ctypes.c_wchar * 128),
        ("VendorId", ctypes.c_uint),
        ("DeviceId", ctypes.c_uint),
        ("SubSysId", ctypes.c_uint),
        ("Revision", ctypes.c_uint),
        ("DedicatedVideoMemory", ctypes.c_size_t),
        ("DedicatedSystemMemory", ctypes.c_size_t),
        ("SharedSystemMemory", ctypes.c_size_t),
        ("AdapterLuidLow", ctypes.c_uint32),
        ("AdapterLuidHigh", ctypes.c_int32),
        ("Flags", ctypes.c_uint),
    ]


class _VideoMemoryInfo(ctypes.Structure):
    _fields_ = [
        ("Budget", ctypes.c_uint64),
        ("CurrentUsage", ctypes.c_uint64),
        ("AvailableForReservation", ctypes.c_uint64),
        ("CurrentReservation", ctypes.c_uint64),
    ]


_IID_FACTORY1 = "770aae78-f26f-4dba-a829-253c83d1b387"
_IID_ADAPTER3 = "645967a4-1392-4310-a798-8053ce3e93fd"
_ADAPTER_FLAG_SOFTWARE = 2
# vtable slots: IUnknown 0-2, IDXGIObject 3-6, IDXGIFactory 7-11, IDXGIFactory1 12-13;
# IDXGIAdapter 7-9, IDXGIAdapter1 10, IDXGIAdapter2 11, IDXGIAdapter3 12-17.
_RELEASE, _QUERY_INTERFACE, _ENUM_ADAPTERS1, _GET_DESC1, _QUERY_VIDEO_MEMORY_INFO = 2, 0, 12, 10, 14


def _com_method(obj: ctypes.c_void_p, slot: int, *argtypes: Any) -> Any:
    vtable = ctypes.cast(obj, ctypes.POINTER(ctypes.POINTER(ctypes.c_void_p))).contents
    prototype = ctypes.WINFUNCTYPE(ctypes.c_long, ctypes.c_void_p, *argtypes)  # type: ignore[attr-defined]
    return prototype(vtable[slot])


def _dxgi_adapters() -> list[tuple[int, int, int]]:
    """(DedicatedVideoMemory, CurrentUsage, Budget) per hardware adapter; released in order."""
    dxgi = ctypes.WinDLL("dxgi")  # type: ignore[attr-defined]
    factory = ctypes.c_void_p()
    iid = _Guid.parse(_IID_FACTORY1)
    if dxgi.CreateDXGIFactory1(ctypes.byref(iid), ctypes.byref(factory)) != 0:
        return []
    found: list[tuple[int, int, int]] = []
    try:
        index = 0
        while True:
            adapter = ctypes.c_void_p()
            enum = _com_method(factory, _ENUM_ADAPTERS1, ctypes.c_uint, ctypes.c_void_p)
            if enum(factory, index, ctypes.byref(adapter)) != 0:
                break  # DXGI_ERROR_NOT_FOUND past the last adapter; any failure ends it too
            index += 1
            try:
                found.extend(_adapter_memory(adapter))
            finally:
                _com_method(adapter, _RELEASE)(adapter)
    finally:
        _com_method(factory, _RELEASE)(factory)
    return found


def _adapter_memory(adapter: ctypes.c_void_p) -> list[tuple[int, int, int]]:
    desc = _AdapterDesc1()
    if _com_method(adapter, _GET_DESC1, ctypes.c_void_p)(adapter, ctypes.byref(desc)) != 0:
        return []
    if desc.Flags & _ADAPTER_FLAG_SOFTWARE:
        return []
    adapter3 = ctypes.c_void_p()
    iid = _Guid.parse(_IID_ADAPTER3)
    query = _com_method(adapter, _QUERY_INTERFACE, ctypes.c_void_p, ctypes.c_void_p)
    if query(adapter, ctypes.byref(iid), ctypes.byref(adapter3)) != 0:
        return [(int(desc.DedicatedVideoMemory), 0, 0)]
    try:
        info = _VideoMemoryInfo()
        method = _com_method(
            adapter3, _QUERY_VIDEO_MEMORY_INFO, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p
        )
        if method(adapter3, 0, 0, ctypes.byref(info)) != 0:
            return [(int(desc.DedicatedVideoMemory), 0, 0)]
        return [(int(desc.DedicatedVideoMemory), int(info.CurrentUsage), int(info.Budget))]
    finally:
        _com_method(adapter3, _RELEASE)(adapter3)


class WindowsProbe:
    """GPU memory on Windows through PDH counters and DXGI."""

    name: str = "windows"
    fields: tuple[str, ...] = _FIELDS

    def __init__(
        self,
        backend: WindowsBackend | None = None,
        platform: str = sys.platform,
        own_pid: int | None = None,
    ) -> None:
        self._backend = backend
        self._platform = platform
        self._own_pid = own_pid
        self._reason: str | None = None

    def _start(self) -> WindowsBackend | None:
        if self._backend is not None or self._reason is not None:
            return self._backend
        if self._platform != "win32":
            self._reason = f"PDH and DXGI exist on Windows only, not {self._platform}"
            return None
        try:
            self._backend = _PdhDxgiBackend()
        except ImportError:
            self._reason = "pywin32 is not installed (win32pdh)"
        return self._backend

    def status(self) -> ProbeStatus:
        backend = self._start()
        if backend is None:
            return ProbeStatus(self.name, False, reason=self._reason)
        try:
            total = backend.adapters_dedicated_total()
        except Exception as exc:  # pywintypes.error, OSError from DXGI: a reason, not a crash
            return ProbeStatus(self.name, False, reason=f"DXGI failed: {exc}")
        detail = "PDH GPU Process Memory; DXGI " + (
            "found no hardware adapter" if total is None else f"adapters {total} bytes dedicated"
        )
        return ProbeStatus(self.name, True, detail=detail)

    def read(self, pid: int) -> ProbeResult:
        backend = self._start()
        if backend is None:
            return unavailable(self.fields, self._reason or "unavailable")
        own = pid == (self._own_pid if self._own_pid is not None else os.getpid())
        values: dict[str, int] = {}
        missing: dict[str, str] = {}
        try:
            process = backend.process_memory(pid)
            usage = backend.own_process_usage() if own and process is None else []
        except PermissionError:
            process, usage = None, []
            missing["process_gpu_bytes"] = PERMISSION_DENIED
        except Exception as exc:  # pywintypes.error, OSError: this field only
            process, usage = None, []
            missing["process_gpu_bytes"] = f"PDH failed: {exc}"
        if process is not None:
            values["process_gpu_bytes"] = process[0] + process[1]
        elif usage:
            values["process_gpu_bytes"] = sum(current for current, _ in usage)
        elif "process_gpu_bytes" not in missing:
            values["process_gpu_bytes"] = 0  # PDH lists every process with GPU memory
        for field, call in (
            ("device_used_bytes", backend.adapter_dedicated_usage),
            ("device_total_bytes", backend.adapters_dedicated_total),
        ):
            try:
                value = call()
            except Exception as exc:
                missing[field] = f"PDH/DXGI failed: {exc}"
                continue
            if value is None:
                missing[field] = "no GPU adapter counters"
            else:
                values[field] = value
        return ProbeResult(values, missing)

    def close(self) -> None:
        """Each PDH query is opened and closed per read; nothing is held."""
