"""The Windows (PDH, DXGI) and macOS (Metal, IOKit) probes' mapping, against fakes of the
vendor calls: this machine is Linux, so the real calls cannot run here."""

from __future__ import annotations

import ctypes
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from vramguard.probes import windows as win
from vramguard.probes.metal import IN_USE_KEYS, MetalProbe, in_use_bytes
from vramguard.probes.windows import WindowsProbe

MiB = 2**20


@dataclass
class FakePdhDxgi:
    processes: dict[int, tuple[int, int]] = field(default_factory=dict)
    adapter_usage: int | None = 3 << 30
    adapter_total: int | None = 8 << 30
    own_usage: list[tuple[int, int]] = field(default_factory=list)
    denied: bool = False
    failing: dict[str, Exception] = field(default_factory=dict)  # call -> what it raises

    def _enter(self, call: str) -> None:
        if call in self.failing:
            raise self.failing[call]

    def process_memory(self, pid: int) -> tuple[int, int] | None:
        self._enter("process_memory")
        if self.denied:
            raise PermissionError("permission denied")
        return self.processes.get(pid)

    def adapter_dedicated_usage(self) -> int | None:
        self._enter("adapter_dedicated_usage")
        return self.adapter_usage

    def adapters_dedicated_total(self) -> int | None:
        self._enter("adapters_dedicated_total")
        return self.adapter_total

    def own_process_usage(self) -> list[tuple[int, int]]:
        return self.own_usage


def windows(backend: FakePdhDxgi, own_pid: int = 1) -> WindowsProbe:
    return WindowsProbe(backend=backend, platform="win32", own_pid=own_pid)


def test_pdh_dedicated_and_shared_add_up_for_any_process() -> None:
    result = windows(FakePdhDxgi(processes={42: (300 * MiB, 20 * MiB)})).read(42)
    assert result.values == {
        "process_gpu_bytes": 320 * MiB,
        "device_used_bytes": 3 << 30,
        "device_total_bytes": 8 << 30,
    }


def test_a_process_pdh_does_not_list_holds_no_gpu_memory() -> None:
    assert windows(FakePdhDxgi()).read(42).values["process_gpu_bytes"] == 0


def test_dxgi_stands_in_for_the_own_process_when_pdh_has_no_instance() -> None:
    backend = FakePdhDxgi(own_usage=[(100 * MiB, 6 << 30), (5 * MiB, 1 << 30)])
    assert windows(backend, own_pid=42).read(42).values["process_gpu_bytes"] == 105 * MiB


def test_pdh_access_denied_is_permission_denied() -> None:
    result = windows(FakePdhDxgi(denied=True)).read(42)
    assert result.missing["process_gpu_bytes"] == "permission denied"


def test_no_adapter_counters_are_missing_not_zero() -> None:
    result = windows(FakePdhDxgi(adapter_usage=None, adapter_total=None)).read(42)
    assert "device_used_bytes" not in result.values
    assert result.missing["device_total_bytes"] == "no GPU adapter counters"


def test_windows_probe_elsewhere_is_unavailable_with_the_reason() -> None:
    probe = WindowsProbe(platform="linux")
    assert probe.status().reason == "PDH and DXGI exist on Windows only, not linux"
    assert set(probe.read(1).missing) == set(probe.fields)


@dataclass
class FakeMetal:
    allocated: int = 250 * MiB
    working_set: int = 48 << 30
    in_use: int | None = 6 << 30
    error: Exception | None = None  # what allocated_bytes raises, as objc.error would

    def device_name(self) -> str:
        return "Apple M3 Max"

    def allocated_bytes(self) -> int:
        if self.error is not None:
            raise self.error
        return self.allocated

    def recommended_max_bytes(self) -> int:
        return self.working_set

    def device_in_use_bytes(self) -> int | None:
        return self.in_use


def test_metal_reads_the_own_process_and_iokit_the_device() -> None:
    import os

    probe = MetalProbe(backend=FakeMetal(), platform="darwin")
    result = probe.read(os.getpid())
    assert result.values == {
        "process_gpu_bytes": 250 * MiB,
        "device_used_bytes": 6 << 30,
        "device_total_bytes": 48 << 30,
    }
    assert probe.status().detail == "Apple M3 Max; Metal, IOKit"


def test_metal_cannot_read_another_process() -> None:
    result = MetalProbe(backend=FakeMetal(), platform="darwin").read(1)
    assert result.missing["process_gpu_bytes"] == "Metal reports the own process only"


def test_iokit_without_performance_statistics_leaves_device_used_missing() -> None:
    result = MetalProbe(backend=FakeMetal(in_use=None), platform="darwin").read(1)
    assert "device_used_bytes" in result.missing


def test_metal_elsewhere_is_unavailable_with_the_reason() -> None:
    assert MetalProbe(platform="linux").status().reason == "Metal exists on macOS only, not linux"


# -- what the real backends raise, and their pure parts ----------------------------------


class PyWinError(Exception):
    """pywintypes.error's shape: args (winerror, funcname, strerror) and `.winerror`."""

    def __init__(self, winerror: int, funcname: str, strerror: str) -> None:
        super().__init__(winerror, funcname, strerror)
        self.winerror = winerror


PDH_ACCESS_DENIED = 0xC0000BDB - 2**32
PDH_CSTATUS_NO_INSTANCE = 0x800007D1 - 2**32


@pytest.mark.parametrize(
    "call", ["process_memory", "adapter_dedicated_usage", "adapters_dedicated_total"]
)
def test_a_pdh_or_dxgi_failure_costs_its_field_never_raises(call: str) -> None:
    backend = FakePdhDxgi(processes={42: (MiB, 0)})
    backend.failing[call] = PyWinError(PDH_CSTATUS_NO_INSTANCE, "CollectQueryData", "gone")
    probe = windows(backend)
    result = probe.read(42)
    assert any("failed" in reason for reason in result.missing.values())
    assert len(result.values) == 2
    status = probe.status()
    assert status.available == (call != "adapters_dedicated_total")


def test_access_denied_is_known_by_its_code_not_its_text() -> None:
    assert win._is_access_denied(PyWinError(PDH_ACCESS_DENIED, "ExpandCounterPath", "x"))
    assert win._is_access_denied(PyWinError(5, "OpenProcess", "Access is denied."))
    assert not win._is_access_denied(PyWinError(PDH_CSTATUS_NO_INSTANCE, "f", "no access"))
    assert not win._is_access_denied(RuntimeError("access"))


class FakeWin32Pdh:
    """win32pdh's calls as pywin32 documents them: a wildcard with no instance raises."""

    PDH_FMT_LARGE = 0x400

    def __init__(self, counters: dict[str, int], expand_error: Exception | None = None):
        self.counters = counters
        self.expand_error = expand_error
        self.open_queries = 0

    def ExpandCounterPath(self, pattern: str) -> list[str]:
        if self.expand_error is not None:
            raise self.expand_error
        prefix = pattern.split("*")[0]
        suffix = pattern.split(")")[-1]
        found = [p for p in self.counters if p.startswith(prefix) and p.endswith(suffix)]
        if not found:
            raise PyWinError(PDH_CSTATUS_NO_INSTANCE, "ExpandCounterPath", "no instance")
        return found

    def OpenQuery(self) -> str:
        self.open_queries += 1
        return "query"

    def AddCounter(self, query: str, path: str) -> str:
        return path

    def CollectQueryData(self, query: str) -> None:
        return None

    def GetFormattedCounterValue(self, counter: str, fmt: int) -> tuple[int, int]:
        assert fmt == self.PDH_FMT_LARGE
        return (0x10000, self.counters[counter])

    def CloseQuery(self, query: str) -> None:
        self.open_queries -= 1


def pdh_backend(pdh: FakeWin32Pdh) -> Any:
    backend = object.__new__(win._PdhDxgiBackend)  # its __init__ imports win32pdh
    backend._pdh = pdh
    return backend


def test_the_real_pdh_backend_sums_a_process_instances_and_closes_its_queries() -> None:
    memory = r"\GPU Process Memory(pid_42_luid_0x0_0x1_phys_0)"
    other = r"\GPU Process Memory(pid_42_luid_0x0_0x2_phys_0)"
    pdh = FakeWin32Pdh({
        rf"{memory}\Dedicated Usage": 300 * MiB, rf"{other}\Dedicated Usage": 10 * MiB,
        rf"{memory}\Shared Usage": 20 * MiB,
    })  # fmt: skip
    backend = pdh_backend(pdh)
    assert backend.process_memory(42) == (310 * MiB, 20 * MiB)
    assert backend.process_memory(7) is None  # no instance: no GPU memory
    assert pdh.open_queries == 0


def test_the_real_pdh_backend_turns_access_denied_into_permission_error() -> None:
    pdh = FakeWin32Pdh({}, PyWinError(PDH_ACCESS_DENIED, "ExpandCounterPath", "denied"))
    with pytest.raises(PermissionError):
        pdh_backend(pdh).process_memory(42)
    assert windows(pdh_backend(pdh)).read(42).missing["process_gpu_bytes"] == "permission denied"


def test_guid_parse_lays_out_the_bytes_as_windows_does() -> None:
    for text in (win._IID_FACTORY1, win._IID_ADAPTER3, "{" + win._IID_ADAPTER3 + "}"):
        guid = win._Guid.parse(text)
        assert ctypes.sizeof(guid) == 16
        assert bytes(guid) == uuid.UUID(text.strip("{}")).bytes_le
    with pytest.raises(ValueError, match="not a GUID"):
        win._Guid.parse("770aae78-f26f")


def test_video_memory_info_has_dxgis_layout() -> None:
    # DXGI_QUERY_VIDEO_MEMORY_INFO: Budget, CurrentUsage, AvailableForReservation,
    # CurrentReservation, four UINT64
    assert ctypes.sizeof(win._VideoMemoryInfo) == 32
    assert win._VideoMemoryInfo.CurrentUsage.offset == 8
    assert [name for name, _ in win._AdapterDesc1._fields_][-6:] == [
        "DedicatedVideoMemory", "DedicatedSystemMemory", "SharedSystemMemory",
        "AdapterLuidLow", "AdapterLuidHigh", "Flags",
    ]  # fmt: skip


def test_iokit_in_use_memory_sums_accelerators_and_skips_those_without_it() -> None:
    stats = [{"In use system memory": 6 << 30}, None, {"Device Utilization %": 3},
             {"vramUsedBytes": 1 << 30}]  # fmt: skip
    assert in_use_bytes(stats) == 7 << 30
    assert in_use_bytes([None, {"Device Utilization %": 3}]) is None
    assert IN_USE_KEYS[0] == "In use system memory"


def test_a_metal_call_that_raises_costs_its_field_never_raises() -> None:
    probe = MetalProbe(backend=FakeMetal(error=RuntimeError("objc.error")), platform="darwin")
    result = probe.read(os.getpid())
    assert "failed" in result.missing["process_gpu_bytes"]
    assert result.values["device_total_bytes"] == 48 << 30
