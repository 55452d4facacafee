"""Real readings of real processes on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import vramguard
from vramguard import probes
from vramguard.probes.process import ProcessProbe

MiB = 2**20

_HOLDER = """
import sys
import numpy as np
print("ready", flush=True)
sys.stdin.readline()
held = np.ones(200 * 2**20, dtype=np.uint8)  # touches every page
print("held", flush=True)
sys.stdin.readline()
"""


def test_reading_this_process_has_real_host_figures() -> None:
    reading = vramguard.read()
    assert reading.pid == os.getpid()
    assert reading.host_rss_bytes is not None and reading.host_rss_bytes > 10 * MiB
    assert reading.threads is not None and reading.threads >= 1
    assert reading.open_handles is not None and reading.open_handles >= 3
    assert reading.sources["host_rss_bytes"] == "process"


def test_gpu_fields_without_a_gpu_are_none_with_reasons_never_zero() -> None:
    statuses = {s.name: s for s in probes.available()}
    if any(statuses[n].available for n in ("nvml", "drm", "windows", "metal")):
        pytest.skip("this machine has a GPU probe; the no-GPU shape cannot be seen here")
    reading = vramguard.read()
    assert reading.process_gpu_bytes is None
    assert reading.device_used_bytes is None
    assert reading.source is None
    assert "nvml:" in reading.unavailable["process_gpu_bytes"]


def test_holding_200_mb_more_raises_rss_by_about_200_mb() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        before = probes.read(child.pid).host_rss_bytes
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "held"
        after = probes.read(child.pid).host_rss_bytes
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    assert before is not None and after is not None
    assert 190 * MiB <= after - before <= 215 * MiB


def test_a_missing_process_raises_no_such_process() -> None:
    with pytest.raises(probes.NoSuchProcess, match="no process with pid"):
        probes.read(2**22 + 12345)


def test_heap_statistics_are_for_this_process_only() -> None:
    other = ProcessProbe().read(1)
    assert other.missing["heap_free_bytes"] == "heap statistics are readable for this process only"


@pytest.mark.skipif(vramguard.heap_unavailable_reason() is not None, reason="needs glibc")
def test_heap_stats_see_a_large_free_and_trim_returns_it() -> None:
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    vramguard.trim_heap()
    blocks = [libc.malloc(4000) for _ in range(25_000)]  # ~100 MB in small blocks
    pin = libc.malloc(4000)  # keeps the freed blocks below the top of the heap
    for block in blocks:
        ctypes.memset(block, 1, 4000)
    before = vramguard.heap_stats()
    for block in blocks:
        libc.free(block)
    after_free = vramguard.heap_stats()
    rss_freed = probes.read().host_rss_bytes
    released = vramguard.trim_heap()
    rss_trimmed = probes.read().host_rss_bytes
    libc.free(pin)
    assert before is not None and after_free is not None
    assert after_free.free_bytes - before.free_bytes > 90 * MiB
    assert before.in_use_bytes - after_free.in_use_bytes > 90 * MiB
    assert released is True
    assert rss_freed is not None and rss_trimmed is not None
    assert rss_freed - rss_trimmed > 80 * MiB


def _read_as_nobody(pid: int) -> dict[str, object]:
    """Read `pid` with the CLI from a forked child that has dropped to user nobody."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            sys.stdout = os.fdopen(write_end, "w")  # pytest replaced the real stdout
            from vramguard.cli import main

            code = main(["probe", "--pid", str(pid), "--json"])
            sys.stdout.flush()
            os._exit(code)
        except BaseException:
            os._exit(99)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        output = pipe.read()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    document: dict[str, object] = json.loads(output)
    return document


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_process_we_may_not_inspect_degrades_to_permission_denied() -> None:
    reading = _read_as_nobody(1)["reading"] if os.geteuid() == 0 else probes.read(1).as_dict()
    assert isinstance(reading, dict)
    assert reading["unavailable"]["open_handles"] == "process: permission denied"
    assert reading["host_rss_bytes"] > 0  # statm is readable by anyone
