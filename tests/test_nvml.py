"""The NVML probe's mapping and fallbacks, checked against a fake of the pynvml module."""

from __future__ import annotations

from fake_nvml import (
    NOT_AVAILABLE,
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    FakeGpu,
    FakeNvml,
)
from vramguard.probes.nvml import NvmlProbe

MiB = 2**20


def probe_with(fake: FakeNvml, in_namespace: bool = False) -> NvmlProbe:
    return NvmlProbe(library=fake, in_pid_namespace=lambda: in_namespace)


def test_process_memory_is_summed_over_devices_and_deduplicated_across_lists() -> None:
    gpus = [
        FakeGpu(compute=[(100, 300 * MiB), (200, 5 * MiB)], graphics=[(100, 300 * MiB)]),
        FakeGpu(used=2 << 30, compute=[(100, 50 * MiB)]),
    ]
    result = probe_with(FakeNvml(gpus)).read(100)
    assert result.values["process_gpu_bytes"] == 350 * MiB
    assert result.values["device_used_bytes"] == (1 << 30) + (2 << 30)
    assert result.values["device_total_bytes"] == 2 * (141 << 30)


def test_device_figures_cover_only_the_devices_the_process_uses() -> None:
    gpus = [FakeGpu(used=1 << 30), FakeGpu(used=3 << 30, compute=[(7, 10 * MiB)])]
    result = probe_with(FakeNvml(gpus)).read(7)
    assert result.values["device_used_bytes"] == 3 << 30
    assert result.values["device_total_bytes"] == 141 << 30


def test_a_process_without_a_gpu_context_uses_zero_and_sees_every_device() -> None:
    gpus = [FakeGpu(used=1 << 30), FakeGpu(used=3 << 30)]
    result = probe_with(FakeNvml(gpus)).read(999)
    assert result.values["process_gpu_bytes"] == 0
    assert result.values["device_used_bytes"] == 4 << 30


def test_inside_a_pid_namespace_an_unlisted_process_is_unknown_not_zero() -> None:
    result = probe_with(FakeNvml([FakeGpu()]), in_namespace=True).read(999)
    assert "process_gpu_bytes" not in result.values
    assert "host PIDs" in result.missing["process_gpu_bytes"]


def test_process_list_falls_back_from_v3_to_v2() -> None:
    fake = FakeNvml([FakeGpu(compute=[(5, 64 * MiB)])], versions=("v2",))
    probe = probe_with(fake)
    assert probe.read(5).values["process_gpu_bytes"] == 64 * MiB
    assert probe.process_list_version == "v2"
    assert fake.calls.index("compute_v3") < fake.calls.index("compute_v2")


def test_process_list_falls_back_to_v1_through_the_raw_entry_point() -> None:
    fake = FakeNvml([FakeGpu(compute=[(5, 64 * MiB), (6, MiB)])], versions=("v1",))
    probe = probe_with(fake)
    assert probe.read(5).values["process_gpu_bytes"] == 64 * MiB
    assert probe.process_list_version == "v1"


def test_bindings_without_versioned_calls_go_straight_to_v1() -> None:
    fake = FakeNvml([FakeGpu(graphics=[(5, 32 * MiB)])], versions=("v1",))
    for kind in ("Compute", "Graphics"):
        for version in ("v3", "v2"):
            delattr(fake, f"nvmlDeviceGet{kind}RunningProcesses_{version}")
    assert probe_with(fake).read(5).values["process_gpu_bytes"] == 32 * MiB


def test_memory_info_falls_back_from_v2_to_v1() -> None:
    fake = FakeNvml([FakeGpu(compute=[(5, MiB)])], memory_v2=False)
    result = probe_with(fake).read(5)
    assert result.values["device_used_bytes"] == 1 << 30
    assert fake.calls.index("memory_v2") < fake.calls.index("memory_v1")


def test_wddm_not_available_value_is_none_not_zero() -> None:
    fake = FakeNvml([FakeGpu(compute=[(5, NOT_AVAILABLE)])])
    result = probe_with(fake).read(5)
    assert "process_gpu_bytes" not in result.values
    assert "WDDM" in result.missing["process_gpu_bytes"]


def test_encoder_sessions_are_counted_per_process() -> None:
    gpus = [FakeGpu(encoder_pids=[5, 5, 9]), FakeGpu(encoder_pids=[5])]
    assert probe_with(FakeNvml(gpus)).read(5).values["encoder_sessions"] == 3


def test_encoder_sessions_not_supported_is_missing_with_the_reason() -> None:
    fake = FakeNvml([FakeGpu(encoder_error=NVML_ERROR_NOT_SUPPORTED)])
    result = probe_with(fake).read(5)
    assert "encoder_sessions" not in result.values
    assert result.missing["encoder_sessions"] == "not supported by this GPU or driver"


def test_no_driver_makes_every_field_unavailable_with_the_reason() -> None:
    probe = probe_with(FakeNvml(init_error=NVML_ERROR_LIBRARY_NOT_FOUND))
    status = probe.status()
    assert not status.available
    assert status.reason == "no NVIDIA driver (NVML library not found)"
    result = probe.read(5)
    assert result.values == {}
    assert set(result.missing) == set(probe.fields)


def test_driver_not_loaded_and_permission_have_their_own_reasons() -> None:
    loaded = probe_with(FakeNvml(init_error=NVML_ERROR_DRIVER_NOT_LOADED)).status()
    denied = probe_with(FakeNvml(init_error=NVML_ERROR_NO_PERMISSION)).status()
    assert loaded.reason == "NVIDIA driver not loaded"
    assert denied.reason == "permission denied"


def test_no_gpu_is_unavailable() -> None:
    fake = FakeNvml(gpus=[])
    status = probe_with(fake).status()
    assert status.reason == "no NVIDIA GPU found"
    assert fake.initialised == 0


def test_nvml_starts_lazily_once_and_shuts_down_on_close() -> None:
    fake = FakeNvml()
    probe = probe_with(fake)
    assert fake.calls == []
    probe.status()
    probe.read(1)
    probe.read(2)
    assert fake.calls.count("init") == 1
    probe.close()
    probe.close()
    assert fake.calls.count("shutdown") == 1
    assert fake.initialised == 0


def test_status_names_the_devices_and_driver() -> None:
    status = probe_with(FakeNvml([FakeGpu(), FakeGpu(name="NVIDIA L4")])).status()
    assert status.available
    assert status.detail == "2 GPU(s): NVIDIA H200, NVIDIA L4; driver 570.86.15"


def test_without_the_bindings_installed_the_reason_says_so(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import builtins

    real_import = builtins.__import__

    def refuse(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "pynvml":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    assert NvmlProbe().status().reason == "nvidia-ml-py is not installed"


def test_real_bindings_on_this_machine_say_why_they_are_unavailable() -> None:
    status = NvmlProbe().status()
    if status.available:  # a machine with an NVIDIA driver: the probe must read it
        assert NvmlProbe().read(1).values["device_total_bytes"] > 0
    else:
        assert status.reason
