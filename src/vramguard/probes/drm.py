"""Linux DRM fdinfo (amdgpu, i915, xe, any driver that follows drm-usage-stats) and amdgpu sysfs.

A process's GPU memory is in `/proc/PID/fdinfo/FD` of each file descriptor open on a DRM
character device (major 226): `drm-driver`, `drm-client-id`, `drm-pdev`, and per memory
region `drm-total-<region>`, `drm-resident-<region>` or the legacy `drm-memory-<region>`
(amdgpu before 6.x), each with a unit of none, KiB or MiB. Several descriptors can share
one DRM client (dup, fork), so each client is counted once. Reading another user's
fdinfo needs ptrace rights. Device-wide VRAM comes from amdgpu's sysfs
`mem_info_vram_used` / `mem_info_vram_total`; i915 and xe export no such counter.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from vramguard.probes.base import (
    PERMISSION_DENIED,
    NoSuchProcess,
    ProbeResult,
    ProbeStatus,
    unavailable,
)

DRM_MAJOR = 226
_UNITS = {"": 1, "b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30}
# Regions in device memory; the others (system, gtt, cpu, stolen) are host RAM the GPU maps.
_DEVICE_LOCAL_PREFIXES = ("vram", "local")
_FIELDS = ("process_gpu_bytes", "device_used_bytes", "device_total_bytes")


@dataclass(frozen=True, slots=True)
class DrmClient:
    """One DRM client (an open DRM file description) and the memory it holds per region."""

    driver: str
    client_id: str
    pdev: str
    regions: dict[str, int]  # bytes per region: resident where given, else total


def _to_bytes(text: str) -> int | None:
    parts = text.split()
    if not parts or not parts[0].isdigit() or len(parts) > 2:
        return None
    unit = parts[1].lower() if len(parts) == 2 else ""
    multiplier = _UNITS.get(unit)
    return None if multiplier is None else int(parts[0]) * multiplier


def parse_fdinfo(text: str) -> DrmClient | None:
    """The DRM client in one fdinfo file, or None when it is not a DRM client with stats."""
    keys: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            keys[key.strip()] = value.strip()
    driver = keys.get("drm-driver")
    if driver is None:
        return None
    # drm-total-cycles-<engine> is an engine counter that shares the memory key prefix.
    by_kind: dict[str, dict[str, int]] = {"resident": {}, "total": {}, "memory": {}}
    for key, value in keys.items():
        for kind, regions in by_kind.items():
            prefix = f"drm-{kind}-"
            if key.startswith(prefix) and not key.startswith("drm-total-cycles-"):
                amount = _to_bytes(value)
                if amount is not None:
                    regions[key[len(prefix) :]] = amount
    merged: dict[str, int] = {}
    for kind in ("memory", "total", "resident"):  # later kinds win: resident is best
        merged.update(by_kind[kind])
    return DrmClient(
        driver=driver,
        client_id=keys.get("drm-client-id", ""),
        pdev=keys.get("drm-pdev", ""),
        regions=merged,
    )


def _is_drm_fd(fd_path: Path) -> bool:
    try:
        st = os.stat(fd_path)
    except OSError:
        # A fixture tree, or a device node outside this mount namespace: go by the name.
        try:
            return os.readlink(fd_path).startswith("/dev/dri/")
        except OSError:
            return False
    return stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == DRM_MAJOR


def process_clients(pid: int, proc_root: str | os.PathLike[str] = "/proc") -> list[DrmClient]:
    """Every distinct DRM client the process holds open.

    Raises NoSuchProcess when the process does not exist, PermissionError when its
    descriptors may not be inspected. A descriptor closed while it is read is skipped.
    """
    base = Path(proc_root) / str(pid)
    try:
        names = os.listdir(base / "fd")
    except FileNotFoundError:
        raise NoSuchProcess(pid) from None
    seen: set[tuple[str, str, str]] = set()
    clients: list[DrmClient] = []
    for name in sorted(names, key=lambda n: int(n) if n.isdigit() else -1):
        if not _is_drm_fd(base / "fd" / name):
            continue
        try:
            text = (base / "fdinfo" / name).read_text(encoding="utf-8", errors="replace")
        except PermissionError:
            raise
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EISDIR, errno.ESRCH):
                continue  # the descriptor closed between the listing and the read
            raise
        client = parse_fdinfo(text)
        if client is None:
            continue
        key = (client.driver, client.pdev, client.client_id)
        if client.client_id and key in seen:
            continue
        seen.add(key)
        clients.append(client)
    return clients


def process_memory(pid: int, proc_root: str | os.PathLike[str] = "/proc") -> dict[str, int]:
    """Bytes per memory region (resident where the driver says, else total), summed over
    the process's DRM clients. Empty when the process holds no DRM client."""
    return _sum_regions(process_clients(pid, proc_root))


def _sum_regions(clients: list[DrmClient]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for client in clients:
        for region, amount in client.regions.items():
            totals[region] = totals.get(region, 0) + amount
    return totals


def gpu_bytes(regions: dict[str, int]) -> int:
    """The GPU memory of a process: its device-local regions (VRAM) where it has any,
    else everything (an integrated GPU has only system memory)."""
    local = [v for r, v in regions.items() if r.startswith(_DEVICE_LOCAL_PREFIXES)]
    return sum(local) if local else sum(regions.values())


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def amdgpu_vram(
    sys_root: str | os.PathLike[str] = "/sys", pdevs: set[str] | None = None
) -> tuple[int, int] | None:
    """(used, total) VRAM bytes from amdgpu sysfs, over `pdevs` (PCI addresses) or all cards."""
    used = total = 0
    found = False
    drm_class = Path(sys_root) / "class" / "drm"
    try:
        cards = sorted(p for p in drm_class.iterdir() if p.name.startswith("card"))
    except OSError:
        return None
    seen: set[str] = set()
    for card in cards:
        device = card / "device"
        try:
            pdev = os.path.basename(os.path.realpath(device))
        except OSError:
            continue
        if pdev in seen or (pdevs and pdev not in pdevs):
            continue
        card_used = _read_int(device / "mem_info_vram_used")
        card_total = _read_int(device / "mem_info_vram_total")
        if card_used is None or card_total is None:
            continue
        seen.add(pdev)
        used += card_used
        total += card_total
        found = True
    return (used, total) if found else None


class DrmProbe:
    """Per-process GPU memory from DRM fdinfo; device VRAM from amdgpu sysfs."""

    name: str = "drm"
    fields: tuple[str, ...] = _FIELDS

    def __init__(
        self,
        proc_root: str | os.PathLike[str] = "/proc",
        sys_root: str | os.PathLike[str] = "/sys",
        dev_root: str | os.PathLike[str] = "/dev",
        platform: str = sys.platform,
    ) -> None:
        self.proc_root = Path(proc_root)
        self.sys_root = Path(sys_root)
        self.dev_root = Path(dev_root)
        self.platform = platform

    def _unavailable_reason(self) -> str | None:
        if not self.platform.startswith("linux"):
            return f"DRM fdinfo exists on Linux only, not {self.platform}"
        try:
            nodes = os.listdir(self.dev_root / "dri")
        except OSError:
            return f"no DRM devices ({self.dev_root / 'dri'} is missing)"
        if not nodes:
            return f"no DRM devices ({self.dev_root / 'dri'} is empty)"
        return None

    def status(self) -> ProbeStatus:
        reason = self._unavailable_reason()
        if reason is not None:
            return ProbeStatus(self.name, False, reason=reason)
        nodes = sorted(os.listdir(self.dev_root / "dri"))
        vram = "amdgpu VRAM in sysfs" if amdgpu_vram(self.sys_root) else "no sysfs VRAM counters"
        return ProbeStatus(self.name, True, detail=f"{', '.join(nodes)}; {vram}")

    def read(self, pid: int) -> ProbeResult:
        reason = self._unavailable_reason()
        if reason is not None:
            return unavailable(self.fields, reason)
        values: dict[str, int] = {}
        missing: dict[str, str] = {}
        pdevs: set[str] = set()
        try:
            clients = process_clients(pid, self.proc_root)
        except PermissionError:
            missing["process_gpu_bytes"] = PERMISSION_DENIED
        else:
            pdevs = {c.pdev for c in clients if c.pdev}
            if clients and not any(c.regions for c in clients):
                missing["process_gpu_bytes"] = "the driver reports no memory in fdinfo"
            else:
                values["process_gpu_bytes"] = gpu_bytes(_sum_regions(clients))
        vram = amdgpu_vram(self.sys_root, pdevs or None)
        if vram is None:
            missing["device_used_bytes"] = missing["device_total_bytes"] = (
                "no VRAM counters in sysfs (amdgpu only)"
            )
        else:
            values["device_used_bytes"], values["device_total_bytes"] = vram
        return ProbeResult(values, missing)

    def close(self) -> None:
        """Nothing held between reads."""
