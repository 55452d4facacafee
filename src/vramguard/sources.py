"""Test sources for the soak: frames drawn straight into a caller's I420 buffer.

`synthetic` (the default) slides stripes across the whole picture and moves a box: every
pixel changes every frame, the worst case for an encoder's motion search, and drawing costs
~0.2 ms at 1080p. `testsrc2` is FFmpeg's own test pattern from libavfilter (the one
`ffmpeg -f lavfi -i testsrc2` encodes), rendered through PyAV's filter graph at ~1.3 ms a
1080p frame: the source to compare against the ffmpeg command line on equal content.
Sources are closed explicitly (`close()`): the filter graph is freed then.
"""

from __future__ import annotations

from typing import Any, Protocol

import av.filter
import numpy as np
import numpy.typing as npt

SOURCES = ("synthetic", "testsrc2")


class Source(Protocol):
    width: int
    height: int

    def draw(self, target: npt.NDArray[np.uint8], index: int) -> None: ...
    def close(self) -> None: ...


class SyntheticSource:
    """Moving test pictures drawn straight into an I420 buffer: cheap, and never still."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._ramp = (np.arange(width + 512) % 256).astype(np.uint8)
        self._box = max(16, min(width, height) // 6)

    def draw(self, target: npt.NDArray[np.uint8], index: int) -> None:
        w, h = self.width, self.height
        shift = (3 * index) % 256
        target[:h] = self._ramp[shift : shift + w]  # stripes that slide to the left
        x = (7 * index) % max(1, w - self._box)
        y = (5 * index) % max(1, h - self._box)
        target[y : y + self._box, x : x + self._box] = 235  # a box that moves
        target[h:] = 128 + (index % 64) - 32  # chroma that drifts

    def close(self) -> None:
        """Nothing to free: the source is two small numpy arrays."""


class LavfiSource:
    """Frames from a libavfilter source (testsrc2 by default), in order, copied into the
    target buffer plane by plane (the filter's frames have their own line padding)."""

    def __init__(self, width: int, height: int, fps: int, pattern: str = "testsrc2") -> None:
        self.width, self.height = width, height
        graph: Any = av.filter.Graph()
        source = graph.add(pattern, f"size={width}x{height}:rate={fps}")
        convert = graph.add("format", "pix_fmts=yuv420p")
        sink = graph.add("buffersink")
        source.link_to(convert)
        convert.link_to(sink)
        graph.configure()
        self._graph: Any = graph
        self._planes = ((width, height), (width // 2, height // 2), (width // 2, height // 2))

    def draw(self, target: npt.NDArray[np.uint8], index: int) -> None:
        """The next frame of the pattern (`index` is ignored: the filter keeps its own)."""
        if self._graph is None:
            raise RuntimeError("the source is closed")
        frame = self._graph.pull()
        flat = target.reshape(-1)  # Y, then U, then V, each plane's rows back to back
        offset = 0
        for plane, (width, height) in zip(frame.planes, self._planes, strict=True):
            rows = np.frombuffer(plane, np.uint8).reshape(height, plane.line_size)
            flat[offset : offset + width * height].reshape(height, width)[:] = rows[:, :width]
            offset += width * height

    def close(self) -> None:
        """Free the filter graph (its frames pool with it). Idempotent."""
        self._graph = None


def make_source(name: str, width: int, height: int, fps: int) -> SyntheticSource | LavfiSource:
    """A source by name; ValueError names the ones there are."""
    if name == "synthetic":
        return SyntheticSource(width, height)
    if name == "testsrc2":
        return LavfiSource(width, height, fps, "testsrc2")
    raise ValueError(f"unknown source {name!r}: use {', '.join(SOURCES)}")
