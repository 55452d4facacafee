"""The Windows (PDH, DXGI) and macOS (Metal, IOKit) probes' mapping, against fakes of the
vendor calls: this machine is Linux, so the real calls cannot run here."""

from __future__ import annotations

from dataclasses import dataclass, field

from vramguard.probes.metal import MetalProbe
from vramguard.probes.windows import WindowsProbe

MiB = 2**20


@dataclass
class FakePdhDxgi:
    processes: dict[int, tuple[int, int]] = field(default_factory=dict)
    adapter_usage: int | None = 3 << 30
    adapter_total: int | None = 8 << 30
    own_usage: list[tuple[int, int]] = field(default_factory=list)
    denied: bool = False

    def process_memory(self, pid: int) -> tuple[int, int] | None:
        if self.denied:
            raise PermissionError("permission denied")
        return self.processes.get(pid)

    def adapter_dedicated_usage(self) -> int | None:
        return self.adapter_usage

    def adapters_dedicated_total(self) -> int | None:
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

    def device_name(self) -> str:
        return "Apple M3 Max"

    def allocated_bytes(self) -> int:
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
