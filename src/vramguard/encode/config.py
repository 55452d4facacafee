"""What an encoder session is asked to be: codec, size, rate, and what may change in place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

CODECS = ("h264", "hevc", "av1")
#: pixel formats whose chroma is subsampled 2x2 (odd sizes cannot be encoded)
SUBSAMPLED_420 = frozenset({"yuv420p", "nv12", "yuv420p10le", "p010le"})
PIX_FMTS = frozenset(SUBSAMPLED_420 | {"yuv444p"})
MAX_BITRATE_KBPS = 1_000_000
MAX_FPS = 480


@dataclass(frozen=True, slots=True)
class EncoderConfig:
    """A session's settings. Low latency by default: no B-frames, no lookahead.

    `encoder` is "auto" (hardware first, then software) or an FFmpeg encoder name.
    `gop` is frames between keyframes (default: two seconds). `max_bitrate_kbps` is the
    ceiling an in-place bitrate change may reach (default: the bitrate, a fixed-rate
    session); with it, a libx264 session opens in CBR at the ceiling and is brought down to
    `bitrate_kbps` before its first frame, so that it can change rate in place.
    """

    codec: str
    width: int
    height: int
    fps: int
    bitrate_kbps: int
    encoder: str = "auto"
    pix_fmt: str = "yuv420p"
    gop: int | None = None
    low_latency: bool = True
    max_bitrate_kbps: int | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"unknown codec {self.codec!r}: use one of {', '.join(CODECS)}")
        if self.pix_fmt not in PIX_FMTS:
            allowed = ", ".join(sorted(PIX_FMTS))
            raise ValueError(f"unsupported pixel format {self.pix_fmt!r}: use one of {allowed}")
        for name, value, limit in (("width", self.width, 16384), ("height", self.height, 16384)):
            if not isinstance(value, int) or not 16 <= value <= limit:
                raise ValueError(f"{name} must be a whole number from 16 to {limit}, not {value!r}")
        if self.pix_fmt in SUBSAMPLED_420 and (self.width % 2 or self.height % 2):
            raise ValueError(
                f"{self.width}x{self.height} is odd: {self.pix_fmt} needs even width and height"
            )
        if not isinstance(self.fps, int) or not 1 <= self.fps <= MAX_FPS:
            raise ValueError(f"fps must be a whole number from 1 to {MAX_FPS}, not {self.fps!r}")
        if not isinstance(self.bitrate_kbps, int) or not 1 <= self.bitrate_kbps <= MAX_BITRATE_KBPS:
            raise ValueError(
                f"bitrate must be 1 to {MAX_BITRATE_KBPS} kbps, not {self.bitrate_kbps!r}"
            )
        if self.gop is not None and not (isinstance(self.gop, int) and self.gop >= 1):
            raise ValueError(f"gop must be a positive number of frames, not {self.gop!r}")
        ceiling = self.max_bitrate_kbps
        if ceiling is not None and not (
            isinstance(ceiling, int) and self.bitrate_kbps <= ceiling <= MAX_BITRATE_KBPS
        ):
            raise ValueError(f"max bitrate {ceiling!r} kbps must be at least the bitrate")
        if not self.encoder:
            raise ValueError("encoder must be 'auto' or an FFmpeg encoder name")

    @property
    def gop_frames(self) -> int:
        return self.gop if self.gop is not None else 2 * self.fps

    @property
    def ceiling_kbps(self) -> int:
        return self.max_bitrate_kbps or self.bitrate_kbps

    def session_key(self) -> tuple[Any, ...]:
        """What cannot change in a running session: sessions with equal keys are interchangeable
        up to the bitrate."""
        return (
            self.codec, self.encoder, self.width, self.height, self.pix_fmt, self.fps,
            self.gop_frames, self.low_latency, self.ceiling_kbps,
            self.max_bitrate_kbps is None, tuple(sorted(self.options.items())),
        )  # fmt: skip

    def with_bitrate(self, kbps: int) -> EncoderConfig:
        return replace(self, bitrate_kbps=kbps)
