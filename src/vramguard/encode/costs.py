"""What a warm encoder session holds in memory, by codec and size: what a session pool's
idle-memory budget (`SessionPool(max_idle_bytes=)`) counts for each idle session.

Measured with `python bench/adapt.py` (av 18.1 / FFmpeg 8, 2 cores): RSS after opening three
sessions with the soak's settings (reference policy, low delay, ceiling 8000 kbps), each
given eight frames, heap trimmed, minus RSS before, over three. Between and beyond the
measured sizes the cost is interpolated linearly in pixels. libx265 and libsvtav1 size
their thread pools by the cores they see, so a larger host holds more per session: measure
there and pass your own `session_bytes` to the pool. Hardware encoders hold most of theirs
on the GPU and were not measurable here; the software encoder of the same codec stands in.
"""

from __future__ import annotations

import itertools

from vramguard.encode.backends import ENCODERS
from vramguard.encode.config import EncoderConfig

MB = 1_000_000

#: codec -> ((pixels, bytes per warm session), ...) measured at 640x360, 1280x720, 1920x1080
MEASURED: dict[str, tuple[tuple[int, int], ...]] = {
    "h264": ((640 * 360, int(5.9 * MB)), (1280 * 720, int(18.9 * MB)),
             (1920 * 1080, int(38.8 * MB))),
    "hevc": ((640 * 360, int(27.2 * MB)), (1280 * 720, int(72.7 * MB)),
             (1920 * 1080, int(143.4 * MB))),
    "av1": ((640 * 360, int(15.8 * MB)), (1280 * 720, int(37.7 * MB)),
            (1920 * 1080, int(70.1 * MB))),
}  # fmt: skip


def warm_session_bytes(config: EncoderConfig) -> int:
    """Bytes one warm session of `config` holds (host memory, measured for the software
    encoder of its codec), interpolated in pixels between the measured sizes."""
    codec = ENCODERS[config.encoder][0] if config.encoder in ENCODERS else config.codec
    points = MEASURED[codec]
    pixels = config.width * config.height
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if pixels <= x1 or (x1, y1) == points[-1]:
            return max(0, round(y0 + (y1 - y0) * (pixels - x0) / (x1 - x0)))
    raise AssertionError("unreachable: at least two measured sizes per codec")
