"""The soak's test sources: synthetic pictures move everywhere; testsrc2 is FFmpeg's own."""

from __future__ import annotations

import av.filter
import numpy as np
import pytest

from vramguard.sources import LavfiSource, SyntheticSource, make_source


def ffmpeg_testsrc2(width: int, height: int, fps: int) -> av.filter.Graph:
    graph = av.filter.Graph()
    source = graph.add("testsrc2", f"size={width}x{height}:rate={fps}")
    convert = graph.add("format", "pix_fmts=yuv420p")
    sink = graph.add("buffersink")
    source.link_to(convert)
    convert.link_to(sink)
    graph.configure()
    return graph


@pytest.mark.parametrize(("width", "height"), [(320, 240), (1920, 1080), (642, 362)])
def test_testsrc2_fills_the_buffer_with_ffmpegs_own_frames(width: int, height: int) -> None:
    source = LavfiSource(width, height, 30)
    reference = ffmpeg_testsrc2(width, height, 30)
    target = np.zeros((height * 3 // 2, width), np.uint8)
    try:
        for index in range(3):
            source.draw(target, index)
            assert np.array_equal(target, reference.pull().to_ndarray())
    finally:
        source.close()
    with pytest.raises(RuntimeError, match="closed"):
        source.draw(target, 3)


def test_synthetic_pictures_change_every_pixel_row_from_frame_to_frame() -> None:
    source = SyntheticSource(320, 240)
    first, second = (np.zeros((360, 320), np.uint8) for _ in range(2))
    source.draw(first, 0)
    source.draw(second, 1)
    changed_rows = (first[:240] != second[:240]).any(axis=1)
    assert changed_rows.all()


def test_an_unknown_source_names_the_ones_there_are() -> None:
    with pytest.raises(ValueError, match="use synthetic, testsrc2"):
        make_source("smpte", 320, 240, 30)
