"""DRM fdinfo and amdgpu sysfs, read from fixture trees shaped like /proc, /sys and /dev."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from vramguard.probes import drm
from vramguard.probes.base import NoSuchProcess

DATA = Path(__file__).parent / "data" / "drm"
KiB, MiB = 2**10, 2**20


def probe_for(tree: str) -> drm.DrmProbe:
    root = DATA / tree
    return drm.DrmProbe(root / "proc", root / "sys", root / "dev", platform="linux")


def test_amdgpu_legacy_kib_units_and_two_fds_of_one_client_counted_once() -> None:
    regions = drm.process_memory(4242, DATA / "amdgpu" / "proc")
    # client 12 (fds 3 and 4, legacy drm-memory-*) once, plus client 13 (resident wins)
    assert regions["vram"] == (11264 + 6144) * KiB
    assert regions["gtt"] == (2048 + 1024) * KiB
    assert regions["cpu"] == 0


def test_amdgpu_process_gpu_is_vram_and_device_comes_from_sysfs() -> None:
    result = probe_for("amdgpu").read(4242)
    assert result.values["process_gpu_bytes"] == (11264 + 6144) * KiB
    assert result.values["device_used_bytes"] == 1073741824
    assert result.values["device_total_bytes"] == 17163091968


def test_i915_discrete_local0_resident_in_mib() -> None:
    regions = drm.process_memory(5151, DATA / "i915" / "proc")
    assert regions["local0"] == 256 * MiB
    assert regions["system0"] == 20 * MiB
    result = probe_for("i915").read(5151)
    assert result.values["process_gpu_bytes"] == 256 * MiB
    assert "sysfs" in result.missing["device_used_bytes"]


def test_xe_vram0_total_when_no_resident_and_bare_byte_units() -> None:
    regions = drm.process_memory(6161, DATA / "xe" / "proc")
    assert regions == {"system": 4096, "gtt": 2097152, "vram0": 64 * MiB}
    assert probe_for("xe").read(6161).values["process_gpu_bytes"] == 64 * MiB


def test_an_fdinfo_that_cannot_be_read_is_skipped() -> None:
    # fd 4's fdinfo is gone, as when the descriptor closes between listing and reading
    regions = drm.process_memory(7171, DATA / "unreadable" / "proc")
    assert regions == {"system0": 10 * MiB}
    # an integrated GPU has no device-local region: all of it is its memory
    assert probe_for("unreadable").read(7171).values["process_gpu_bytes"] == 10 * MiB


def test_a_process_without_drm_clients_holds_zero() -> None:
    assert drm.process_memory(8181, DATA / "none" / "proc") == {}
    assert probe_for("none").read(8181).values["process_gpu_bytes"] == 0


def test_a_missing_process_raises() -> None:
    with pytest.raises(NoSuchProcess):
        drm.process_memory(1, DATA / "amdgpu" / "proc")


def test_permission_denied_on_the_fd_directory_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    real_listdir = drm.os.listdir

    def deny(path):  # type: ignore[no-untyped-def]
        if str(path).endswith("/fd"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_listdir(path)

    monkeypatch.setattr(drm.os, "listdir", deny)
    result = probe_for("amdgpu").read(4242)
    assert result.missing["process_gpu_bytes"] == "permission denied"
    assert result.values["device_used_bytes"] == 1073741824


def test_parse_fdinfo_ignores_non_drm_files_and_bad_units() -> None:
    assert drm.parse_fdinfo("pos:\t0\nflags:\t02\n") is None
    client = drm.parse_fdinfo("drm-driver:\tx\ndrm-total-vram:\t12 PiB\ndrm-total-gtt:\t3 MiB\n")
    assert client is not None
    assert client.regions == {"gtt": 3 * MiB}


def test_status_outside_linux_or_without_devices() -> None:
    assert not drm.DrmProbe(platform="darwin").status().available
    empty = drm.DrmProbe(dev_root=DATA / "no-such-dev", platform="linux").status()
    assert empty.reason is not None and "no DRM devices" in empty.reason


def test_status_with_devices_lists_them() -> None:
    status = probe_for("amdgpu").status()
    assert status.available
    assert status.detail == "card0, renderD128; amdgpu VRAM in sysfs"
