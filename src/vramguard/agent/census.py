"""One interval's readings of every watched process, taken in one pass.

The GPU probes are read once per interval for all processes: NVML's process lists once
per device, DRM fdinfo in one walk over /proc (only where a DRM device exists); then
psutil reads each watched process's host memory. This runs on the Sampler thread, under
its time limit (see `vramguard.agent.loop`).

A process that ends between discovery and its reading is `gone`; a field the kernel
refuses (another user's descriptors without CAP_SYS_PTRACE) is `denied`, named per
process so the agent can say it once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from vramguard import faults
from vramguard.agent.discovery import Discovery, ProcessInfo, Selector
from vramguard.probes import NoSuchProcess, Reading
from vramguard.probes.drm import DrmProbe, amdgpu_vram, gpu_bytes, process_memory
from vramguard.probes.nvml import NvmlProbe, NvmlUsage

_PAGE = os.sysconf("SC_PAGE_SIZE")


def host_memory(pid: int, proc_root: Path) -> tuple[dict[str, int], list[str]]:
    """RSS, threads and open descriptors from /proc, three small reads (psutil would add
    USS from smaps_rollup, which walks the page tables: 0.6 ms a process here, the most
    of a pass). Returns the values and the fields the kernel refused.

    Raises NoSuchProcess when the process has gone."""
    base = proc_root / str(pid)
    try:
        statm = (base / "statm").read_text().split()
        status = (base / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        raise NoSuchProcess(pid) from None
    values = {"host_rss_bytes": int(statm[1]) * _PAGE}
    threads = status[status.rfind(")") + 2 :].split()[17:18]
    if threads:
        values["threads"] = int(threads[0])
    denied = []
    try:
        values["open_handles"] = len(os.listdir(base / "fd"))
    except PermissionError:
        denied.append("open_handles")
    except FileNotFoundError:
        raise NoSuchProcess(pid) from None
    return values, denied


@dataclass
class Census:
    """What one pass found: the processes chosen, their readings, and what went wrong."""

    chosen: list[ProcessInfo] = field(default_factory=list)
    readings: dict[tuple[int, int], Reading] = field(default_factory=dict)
    gone: set[tuple[int, int]] = field(default_factory=set)
    denied: dict[tuple[int, int], list[str]] = field(default_factory=dict)  # key -> fields
    over_cap: list[ProcessInfo] = field(default_factory=list)  # found but not watched
    gpu_reason: str | None = None  # why no GPU probe answered, when none did
    gpu_lost: str | None = None  # why NVML stopped answering, when it had answered before


@dataclass(frozen=True)
class Request:
    """What the loop asks of one pass: who is tracked already (kept first under the cap)."""

    tracked: frozenset[tuple[int, int]]
    cap: int


class NodeReader:
    """Discovery and readings of every process on the node, one pass per interval."""

    def __init__(
        self,
        selector: Selector,
        nvml: NvmlProbe | None = None,
        drm: DrmProbe | None = None,
        proc_root: str | os.PathLike[str] = "/proc",
    ) -> None:
        self.selector = selector
        self.nvml = nvml if nvml is not None else NvmlProbe()
        self.drm = drm if drm is not None else DrmProbe(proc_root)
        self.proc_root = Path(proc_root)
        self.discovery = Discovery(proc_root, selector)
        self._drm_on = self.drm.status().available
        self._own = os.getpid()
        self._nvml_answered = False

    def close(self) -> None:
        """Release NVML (started on the first pass)."""
        self.nvml.close()
        self.drm.close()

    def _drm_usage(self) -> tuple[dict[int, int], set[int]]:
        """pid -> bytes of every DRM client on the node, and the pids whose fdinfo was refused."""
        found: dict[int, int] = {}
        refused: set[int] = set()
        if not self._drm_on:
            return found, refused
        for name in os.listdir(self.proc_root):
            if not name.isdigit():
                continue
            try:
                regions = process_memory(int(name), self.proc_root)
            except NoSuchProcess:
                continue
            except PermissionError:
                refused.add(int(name))
                continue
            except OSError:
                continue
            if regions:
                found[int(name)] = gpu_bytes(regions)
        return found, refused

    def read(self, request: Request) -> Census:
        faults.hit("probe")  # test-only seam: a probe that raises or hangs
        census = Census()
        usage = self.nvml.usage()
        nvml = usage if isinstance(usage, NvmlUsage) else None
        if nvml is not None:
            self._nvml_answered = True
        elif self._nvml_answered:
            census.gpu_lost = f"NVML stopped answering: {usage}"
        drm, refused = self._drm_usage()
        if nvml is None and not self._drm_on:
            census.gpu_reason = f"nvml: {usage}; drm: no DRM device"
        holders = set(drm) | (set(nvml.process_bytes) if nvml is not None else set())
        holders |= {pid for pid, _ in request.tracked}  # watched until they exit
        found = self.discovery.find(holders, skip={self._own})
        found.sort(key=lambda p: (p.key not in request.tracked, p.pid))
        census.chosen, census.over_cap = found[: request.cap], found[request.cap :]
        vram = amdgpu_vram(self.drm.sys_root) if drm else None
        for info in census.chosen:
            self._read_one(info, census, nvml, drm, vram, info.pid in refused)
        return census

    def _read_one(
        self,
        info: ProcessInfo,
        census: Census,
        nvml: NvmlUsage | None,
        drm: dict[int, int],
        vram: tuple[int, int] | None,
        drm_refused: bool,
    ) -> None:
        try:
            host, denied = host_memory(info.pid, self.proc_root)
        except NoSuchProcess:
            census.gone.add(info.key)
            return
        except (OSError, ValueError, IndexError):  # a torn or unreadable /proc file
            census.gone.add(info.key)
            return
        values: dict[str, int | None] = dict(host)
        sources = dict.fromkeys(host, "proc")
        if drm_refused:
            denied.append("drm fdinfo")
        if nvml is not None and info.pid in nvml.process_bytes:
            values["process_gpu_bytes"] = nvml.process_bytes[info.pid]
            devices = nvml.process_devices[info.pid]
            values["device_used_bytes"] = sum(nvml.device_used[i] for i in devices)
            values["device_total_bytes"] = sum(nvml.device_total[i] for i in devices)
            values["encoder_sessions"] = nvml.encoder_sessions.get(info.pid, 0)
            sources.update(dict.fromkeys(("process_gpu_bytes", "device_used_bytes"), "nvml"))
        elif info.pid in drm:
            values["process_gpu_bytes"] = drm[info.pid]
            sources["process_gpu_bytes"] = "drm"
            if vram is not None:
                values["device_used_bytes"], values["device_total_bytes"] = vram
        if denied:
            census.denied[info.key] = denied
        known = {k: v for k, v in values.items() if v is not None}
        census.readings[info.key] = Reading(
            pid=info.pid,
            **known,  # type: ignore[arg-type]
            source=sources.get("process_gpu_bytes"),
            sources=sources,
        )
