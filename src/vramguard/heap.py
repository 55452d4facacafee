"""The C heap of this process: glibc's `mallinfo2()` and `malloc_trim(0)`.

After an encoder session closes, glibc may keep hundreds of MB of freed heap (measured
~500 MB after SVT-AV1 sessions): RSS stays high with no leak. `heap_stats()` shows how much
of the heap is free, so a monitor can tell retained heap from growth; `trim_heap()` returns
it to the system. Both read this process only; elsewhere than glibc they return None and
`heap_unavailable_reason()` says why.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        ("arena", ctypes.c_size_t),
        ("ordblks", ctypes.c_size_t),
        ("smblks", ctypes.c_size_t),
        ("hblks", ctypes.c_size_t),
        ("hblkhd", ctypes.c_size_t),
        ("usmblks", ctypes.c_size_t),
        ("fsmblks", ctypes.c_size_t),
        ("uordblks", ctypes.c_size_t),
        ("fordblks", ctypes.c_size_t),
        ("keepcost", ctypes.c_size_t),
    ]


@dataclass(frozen=True, slots=True)
class HeapStats:
    """glibc heap of this process, in bytes, summed over every arena."""

    in_use_bytes: int  # allocated and not freed: small blocks plus mmapped blocks
    free_bytes: int  # freed but kept by malloc (fordblks): retained heap
    arena_bytes: int  # taken from the system with brk/mmap for the arenas
    mmapped_bytes: int  # large blocks served by their own mmap
    top_releasable_bytes: int  # free space at the top of the main arena (keepcost)


@dataclass(frozen=True, slots=True)
class _Libc:
    mallinfo2: Callable[[], Any] | None
    malloc_trim: Callable[[int], int] | None
    reason: str | None


@cache
def _libc() -> _Libc:
    if not sys.platform.startswith("linux"):
        return _Libc(None, None, f"glibc heap statistics exist on Linux only, not {sys.platform}")
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        return _Libc(None, None, f"cannot load the C library: {exc}")
    if not hasattr(lib, "gnu_get_libc_version"):
        return _Libc(None, None, "the C library is not glibc (musl or another)")
    mallinfo2 = getattr(lib, "mallinfo2", None)
    if mallinfo2 is None:
        return _Libc(None, None, "glibc is older than 2.33 (no mallinfo2)")
    mallinfo2.restype = _Mallinfo2
    mallinfo2.argtypes = []
    malloc_trim = lib.malloc_trim
    malloc_trim.restype = ctypes.c_int
    malloc_trim.argtypes = [ctypes.c_size_t]
    return _Libc(mallinfo2, malloc_trim, None)


def heap_unavailable_reason() -> str | None:
    """Why heap statistics cannot be had here, or None where they can."""
    return _libc().reason


def heap_stats() -> HeapStats | None:
    """The heap of this process now, or None where glibc's mallinfo2 is missing."""
    libc = _libc()
    if libc.mallinfo2 is None:
        return None
    info = libc.mallinfo2()
    return HeapStats(
        in_use_bytes=int(info.uordblks + info.hblkhd),
        free_bytes=int(info.fordblks),
        arena_bytes=int(info.arena),
        mmapped_bytes=int(info.hblkhd),
        top_releasable_bytes=int(info.keepcost),
    )


def trim_heap() -> bool | None:
    """Return freed heap to the system (`malloc_trim(0)`).

    True when memory was released, False when there was none to release, None where
    there is no glibc.
    """
    libc = _libc()
    if libc.malloc_trim is None:
        return None
    return bool(libc.malloc_trim(0))
