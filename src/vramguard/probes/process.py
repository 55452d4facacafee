"""Host memory of a process, everywhere psutil runs: RSS, USS, descriptors or handles, threads.

The C heap (glibc `mallinfo2`) is added for this process only: no API reads another
process's heap.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import psutil

from vramguard.heap import heap_stats, heap_unavailable_reason
from vramguard.probes.base import PERMISSION_DENIED, NoSuchProcess, ProbeResult, ProbeStatus

# USS is "cheap" where the kernel sums it for us (Linux smaps_rollup, macOS task_info);
# Windows walks the whole working set and older Linux parses every mapping in smaps.
_USS_CHEAP = (sys.platform.startswith("linux") and os.path.exists("/proc/self/smaps_rollup")) or (
    sys.platform == "darwin"
)


class ProcessProbe:
    """psutil's view of a process, plus glibc heap statistics for this process."""

    name: str = "process"
    fields: tuple[str, ...] = (
        "host_rss_bytes",
        "host_uss_bytes",
        "open_handles",
        "threads",
        "heap_in_use_bytes",
        "heap_free_bytes",
    )

    def status(self) -> ProbeStatus:
        handles = "handles" if sys.platform == "win32" else "file descriptors"
        heap = "glibc heap" if heap_unavailable_reason() is None else "no heap statistics"
        return ProbeStatus(
            self.name, True, detail=f"psutil {psutil.__version__}: RSS, {handles}, threads; {heap}"
        )

    def read(self, pid: int) -> ProbeResult:
        try:
            process = psutil.Process(pid)
        except psutil.NoSuchProcess:
            raise NoSuchProcess(pid) from None
        values: dict[str, int] = {}
        missing: dict[str, str] = {}
        count_handles: Callable[[], int] = (
            process.num_handles  # type: ignore[attr-defined]  # Windows only
            if sys.platform == "win32"
            else process.num_fds
        )
        getters: dict[str, Callable[[], int]] = {
            "host_rss_bytes": lambda: int(process.memory_info().rss),
            "open_handles": count_handles,
            "threads": process.num_threads,
        }
        if _USS_CHEAP:
            getters["host_uss_bytes"] = lambda: int(process.memory_full_info().uss)
        else:
            missing["host_uss_bytes"] = "USS is costly to compute on this platform"
        try:
            with process.oneshot():
                for name, getter in getters.items():
                    try:
                        values[name] = int(getter())
                    except psutil.AccessDenied:
                        missing[name] = PERMISSION_DENIED
        except psutil.NoSuchProcess:
            raise NoSuchProcess(pid) from None
        self._add_heap(pid, values, missing)
        return ProbeResult(values, missing)

    @staticmethod
    def _add_heap(pid: int, values: dict[str, int], missing: dict[str, str]) -> None:
        if pid != os.getpid():
            reason = "heap statistics are readable for this process only"
            missing["heap_in_use_bytes"] = missing["heap_free_bytes"] = reason
            return
        heap = heap_stats()
        if heap is None:
            reason = heap_unavailable_reason() or "heap statistics unavailable"
            missing["heap_in_use_bytes"] = missing["heap_free_bytes"] = reason
            return
        values["heap_in_use_bytes"] = heap.in_use_bytes
        values["heap_free_bytes"] = heap.free_bytes

    def close(self) -> None:
        """Nothing to release: psutil opens and closes its files per call."""
