"""The NVML probe's mapping and fallbacks, checked against a fake of the pynvml module."""

from __future__ import annotations

import ctypes
from typing import Any

import pynvml
import pytest

from fake_nvml import (
    _NAMES,
    NOT_AVAILABLE,
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_INSUFFICIENT_SIZE,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_ERROR_UNKNOWN,
    NVML_SUCCESS,
    FakeGpu,
    FakeNvml,
    NVMLError,
    NVMLError_GpuIsLost,
)
from vramguard import probes
from vramguard.probes.nvml import NvmlProbe, _ProcessInfoV1

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
    names = "nvmlDeviceGetComputeRunningProcesses"
    assert fake.calls.index(f"{names}_v3") < fake.calls.index(f"{names}_v2")


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
    v2 = fake.calls.index("nvmlDeviceGetMemoryInfo_v2")
    assert v2 < fake.calls.index("nvmlDeviceGetMemoryInfo")


def test_wddm_not_available_value_is_none_not_zero() -> None:
    fake = FakeNvml([FakeGpu(compute=[(5, NOT_AVAILABLE)])])
    result = probe_with(fake).read(5)
    assert "process_gpu_bytes" not in result.values
    assert "WDDM" in result.missing["process_gpu_bytes"]


def test_encoder_sessions_are_counted_per_process() -> None:
    gpus = [FakeGpu(encoder_pids=[5, 5, 9]), FakeGpu(encoder_pids=[5])]
    assert probe_with(FakeNvml(gpus)).read(5).values["encoder_sessions"] == 3


def test_encoder_sessions_not_supported_is_missing_with_the_reason() -> None:
    fake = FakeNvml([FakeGpu()])
    fake.fail("nvmlDeviceGetEncoderSessions", NVML_ERROR_NOT_SUPPORTED)
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
    assert fake.calls.count("nvmlInit") == 1
    probe.close()
    probe.close()
    assert fake.calls.count("nvmlShutdown") == 1
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


# -- the fake against the real bindings -----------------------------------------------------


def test_the_fake_has_pynvmls_error_codes_messages_and_classes() -> None:
    for value, text in _NAMES.items():
        real = pynvml.NVMLError(value)
        fake = NVMLError(value)
        assert type(fake).__name__ == type(real).__name__
        assert str(fake) == text == str(real)
    assert isinstance(NVMLError(NVML_ERROR_GPU_IS_LOST), NVMLError_GpuIsLost)
    for name in ("NVML_ERROR_NO_PERMISSION", "NVML_ERROR_GPU_IS_LOST", "nvmlMemory_v2"):
        assert getattr(FakeNvml(), name) == getattr(pynvml, name)


def test_the_fake_refuses_calls_before_init_and_after_shutdown_like_nvml() -> None:
    fake = FakeNvml()
    with pytest.raises(NVMLError) as before:
        fake.nvmlDeviceGetCount()
    fake.nvmlInit()
    assert fake.nvmlDeviceGetCount() == 1
    fake.nvmlShutdown()
    with pytest.raises(NVMLError) as after:
        fake.nvmlDeviceGetCount()
    assert type(before.value).__name__ == type(after.value).__name__ == "NVMLError_Uninitialized"
    with pytest.raises(NVMLError):
        fake.nvmlShutdown()


def test_the_fakes_raw_v1_call_sets_the_count_it_needs_on_insufficient_size() -> None:
    fake = FakeNvml([FakeGpu(compute=[(1, MiB), (2, MiB), (3, MiB)])])
    fake.nvmlInit()
    function = fake._nvmlGetFunctionPointer("nvmlDeviceGetComputeRunningProcesses")
    count = ctypes.c_uint(0)
    assert function(fake.gpus[0], ctypes.pointer(count), None) == NVML_ERROR_INSUFFICIENT_SIZE
    assert count.value == 3
    count.value = 1
    small = (_ProcessInfoV1 * 1)()
    assert function(fake.gpus[0], ctypes.pointer(count), small) == NVML_ERROR_INSUFFICIENT_SIZE
    assert count.value == 3
    array = (_ProcessInfoV1 * 8)()
    count.value = 8
    assert function(fake.gpus[0], ctypes.pointer(count), array) == NVML_SUCCESS
    assert (count.value, array[2].pid) == (3, 3)


# -- vendor errors anywhere -----------------------------------------------------------------

REASONS = {
    NVML_ERROR_NO_PERMISSION: "permission denied",
    NVML_ERROR_NOT_SUPPORTED: "not supported by this GPU or driver",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost (NVML_ERROR_GPU_IS_LOST)",
    NVML_ERROR_UNKNOWN: "NVML error: Unknown Error",
}


def every_call_of_a_reading(versions: tuple[str, ...]) -> list[str]:
    fake = FakeNvml([FakeGpu(compute=[(5, MiB)], encoder_pids=[5])], versions=versions)
    probe = probe_with(fake)
    probe.status()
    probe.read(5)
    probe.close()
    return sorted(set(fake.calls))


CALLS = [
    (versions, call)
    for versions in (("v3", "v2", "v1"), ("v1",))
    for call in every_call_of_a_reading(versions)
    if call != "nvmlShutdown"
]


@pytest.mark.parametrize("code", sorted(REASONS))
@pytest.mark.parametrize(("versions", "call"), CALLS)
def test_a_vendor_error_at_any_call_is_a_reason_never_an_exception(
    versions: tuple[str, ...], call: str, code: int
) -> None:
    fake = FakeNvml([FakeGpu(compute=[(5, MiB)], encoder_pids=[5])], versions=versions)
    fake.fail(call, code)
    probe = probe_with(fake)
    status = probe.status()
    result = probe.read(5)
    reading = probes.read(5, probes=[probe]) if status.available else None
    reasons = [status.reason or "", *result.missing.values()]
    if reading is not None:
        reasons.extend(reading.unavailable.values())
    assert any(REASONS[code] in reason for reason in reasons), (status, result)
    if code == NVML_ERROR_GPU_IS_LOST:  # no later call can succeed: the probe stops
        assert not probe.status().available
        assert probe.status().reason == REASONS[code]
        assert fake.initialised == 0
    probe.close()
    assert fake.initialised == 0


def test_the_fake_is_driven_through_every_call_the_probe_makes() -> None:
    calls = {call for _, call in CALLS}
    assert {"nvmlDeviceGetName", "nvmlSystemGetDriverVersion", "nvmlDeviceGetCount"} <= calls
    assert "nvmlDeviceGetComputeRunningProcesses_v3" in calls
    assert "nvmlDeviceGetComputeRunningProcesses" in calls  # the raw v1 entry point
    assert {"nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetEncoderSessions"} <= calls


def test_an_error_while_starting_shuts_nvml_down_and_is_remembered() -> None:
    fake = FakeNvml([FakeGpu()])
    fake.fail("nvmlDeviceGetName", NVML_ERROR_GPU_IS_LOST)
    probe = probe_with(fake)
    for _ in range(3):
        assert probe.status().reason == REASONS[NVML_ERROR_GPU_IS_LOST]
        assert set(probe.read(5).missing) == set(probe.fields)
    assert fake.calls.count("nvmlInit") == 1
    assert fake.initialised == 0


def test_a_failed_init_is_not_retried_on_every_call() -> None:
    fake = FakeNvml(init_error=NVML_ERROR_DRIVER_NOT_LOADED)
    probe = probe_with(fake)
    for _ in range(3):
        probe.status()
        probe.read(1)
    assert fake.calls == ["nvmlInit"]


def test_a_gpu_lost_mid_run_makes_the_probe_unavailable_without_restarting_nvml() -> None:
    fake = FakeNvml([FakeGpu(compute=[(5, MiB)])])
    probe = probe_with(fake)
    assert probe.read(5).values["process_gpu_bytes"] == MiB
    fake.fail("nvmlDeviceGetMemoryInfo_v2", NVML_ERROR_GPU_IS_LOST)
    lost = probe.read(5)
    assert lost.values == {}
    assert set(lost.missing.values()) == {REASONS[NVML_ERROR_GPU_IS_LOST]}
    probe.read(5)
    assert probe.status().reason == REASONS[NVML_ERROR_GPU_IS_LOST]
    assert (fake.calls.count("nvmlInit"), fake.calls.count("nvmlShutdown")) == (1, 1)


def test_nvml_shut_down_underneath_the_probe_is_a_reason() -> None:
    fake = FakeNvml([FakeGpu(compute=[(5, MiB)])])
    probe = probe_with(fake)
    probe.status()
    fake.nvmlShutdown()  # someone else in the process shut NVML down
    result = probe.read(5)
    assert set(result.missing.values()) == {"NVML error: Uninitialized"}
    assert probe.status().reason == "NVML error: Uninitialized"


def test_a_transient_error_costs_one_field_of_one_reading() -> None:
    fake = FakeNvml([FakeGpu(compute=[(5, MiB)])])
    probe = probe_with(fake)
    fake.fail("nvmlDeviceGetComputeRunningProcesses_v3", NVML_ERROR_NO_PERMISSION, times=1)
    first = probe.read(5)
    assert first.missing["process_gpu_bytes"] == "permission denied"
    assert first.values["device_used_bytes"] == 1 << 30
    assert probe.read(5).values["process_gpu_bytes"] == MiB
    assert probe.status().available


def test_the_process_list_version_is_resolved_once() -> None:
    fake = FakeNvml([FakeGpu(compute=[(5, MiB)])], versions=("v1",))
    probe = probe_with(fake)
    probe.read(5)
    first = len(fake.calls)
    probe.read(5)
    later = fake.calls[first:]
    assert probe.process_list_version == "v1"
    assert not any(call.endswith(("_v3", "_v2")) and "Processes" in call for call in later)
    assert "nvmlDeviceGetComputeRunningProcesses" in later


def test_memory_info_version_is_resolved_once() -> None:
    fake = FakeNvml([FakeGpu()], memory_v2=False)
    probe = probe_with(fake)
    probe.read(5)
    probe.read(5)
    assert fake.calls.count("nvmlDeviceGetMemoryInfo_v2") == 1
    assert fake.calls.count("nvmlDeviceGetMemoryInfo") == 2


def test_a_v1_list_that_grows_between_sizing_and_reading_is_read_in_full() -> None:
    gpu = FakeGpu(compute=[(5, MiB)])
    fake = FakeNvml([gpu], versions=("v1",))
    raw = fake._nvmlGetFunctionPointer

    def growing(symbol: str) -> Any:
        function = raw(symbol)

        def call(device: FakeGpu, count: Any, array: Any) -> int:
            answer = function(device, count, array)
            if array is None and symbol.startswith("nvmlDeviceGetCompute"):
                device.compute.extend((100 + i, MiB) for i in range(20))
            return answer

        return call

    fake._nvmlGetFunctionPointer = growing  # type: ignore[method-assign]
    probe = probe_with(fake)
    assert probe.read(119).values["process_gpu_bytes"] == MiB
