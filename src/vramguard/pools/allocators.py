"""Where staging buffers live: host memory (numpy, aligned) always; CUDA device memory and
pinned host memory through PyTorch when it is installed with CUDA.

One small protocol: `allocate(nbytes) -> Buffer`, `free(buffer)`. A buffer has `nbytes`,
and `host` (a uint8 numpy view) when the CPU can write it, which is what a PyAV frame wraps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

ALIGNMENT = 64  # bytes: a cache line, and what SIMD loads in encoders like


@dataclass(eq=False, slots=True)
class Buffer:
    """One allocation. `host` is None for device memory the CPU cannot touch."""

    nbytes: int
    host: npt.NDArray[np.uint8] | None
    handle: Any  # what the allocator needs to free it (the owning array or tensor)


class Allocator(Protocol):
    name: str

    def allocate(self, nbytes: int) -> Buffer: ...

    def free(self, buffer: Buffer) -> None: ...


class HostAllocator:
    """Aligned host memory from numpy. Freed when the pool drops its last reference: the
    buffer is the only owner of its array, so `free` releases it at once."""

    name = "host"

    def allocate(self, nbytes: int) -> Buffer:
        raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
        offset = (-raw.ctypes.data) % ALIGNMENT
        view = raw[offset : offset + nbytes]
        return Buffer(nbytes, view, raw)

    def free(self, buffer: Buffer) -> None:
        buffer.host = None
        buffer.handle = None


def torch_unavailable_reason(device: str) -> str | None:
    """Why a PyTorch allocator for `device` ("cuda" or "pinned") cannot work here, or None."""
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed (pip install 'vramguard[cuda]')"
    if not torch.cuda.is_available():
        return "PyTorch sees no CUDA device"
    if device not in ("cuda", "pinned"):
        return f"unknown device {device!r}: use cuda or pinned"
    return None


class TorchAllocator:
    """CUDA device memory (`device="cuda"`) or page-locked host memory (`"pinned"`), which
    makes host-to-GPU copies asynchronous. Device buffers have no host view."""

    def __init__(self, device: str = "cuda") -> None:
        reason = torch_unavailable_reason(device)
        if reason is not None:
            raise RuntimeError(reason)
        import torch

        self._torch: Any = torch
        self.device = device
        self.name = f"torch-{device}"

    def allocate(self, nbytes: int) -> Buffer:
        torch = self._torch
        if self.device == "pinned":
            tensor = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
            return Buffer(nbytes, tensor.numpy(), tensor)
        tensor = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
        return Buffer(nbytes, None, tensor)

    def free(self, buffer: Buffer) -> None:
        buffer.host = None
        buffer.handle = None  # the caching allocator keeps it; empty_cache() on purge returns it

    def release_cached(self) -> None:
        """Give the CUDA caching allocator's free blocks back to the driver."""
        if self.device == "cuda":
            self._torch.cuda.empty_cache()
