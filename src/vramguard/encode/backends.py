"""Which FFmpeg encoders serve each codec, in which order, with which low-latency options.

Hardware first, by platform (NVENC, QSV, AMF, VA-API on Linux; NVENC, QSV, AMF, Media
Foundation on Windows; VideoToolbox on macOS), then software: libx264, libx265, libsvtav1
(low-delay CBR). Each family's options keep the encoder frame-in, packet-out (no B-frames,
no lookahead), so a session can be drained and handed to the next client.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from vramguard.encode.config import EncoderConfig


@dataclass(frozen=True, slots=True)
class Family:
    """An encoder family: how to drive it and what it can change while open."""

    name: str
    hardware: bool
    input_pix_fmt: str | None = None  # the format it wants frames in, when not the config's
    # Honours a new bit_rate while open. Measured with PyAV 18 / FFmpeg 8: libx264, libx265
    # and libsvtav1 keep their opening rate (x264 applies only VBV maxrate changes, which
    # PyAV 18 cannot set after open); FFmpeg's nvenc, qsv and amf reconfigure per frame.
    bitrate_in_place: bool = False


X264 = Family("x264", False)
X265 = Family("x265", False)
SVTAV1 = Family("svtav1", False)
NVENC = Family("nvenc", True, bitrate_in_place=True)
QSV = Family("qsv", True, input_pix_fmt="nv12", bitrate_in_place=True)
AMF = Family("amf", True, input_pix_fmt="nv12", bitrate_in_place=True)
VAAPI = Family("vaapi", True, input_pix_fmt="vaapi")
VIDEOTOOLBOX = Family("videotoolbox", True, input_pix_fmt="nv12")
MEDIA_FOUNDATION = Family("mf", True, input_pix_fmt="nv12")

#: every encoder vramguard knows: name -> (codec, family)
ENCODERS: dict[str, tuple[str, Family]] = {
    "libx264": ("h264", X264),
    "libx265": ("hevc", X265),
    "libsvtav1": ("av1", SVTAV1),
    **{f"{c}_nvenc": (c, NVENC) for c in ("h264", "hevc", "av1")},
    **{f"{c}_qsv": (c, QSV) for c in ("h264", "hevc", "av1")},
    **{f"{c}_amf": (c, AMF) for c in ("h264", "hevc", "av1")},
    **{f"{c}_vaapi": (c, VAAPI) for c in ("h264", "hevc", "av1")},
    **{f"{c}_videotoolbox": (c, VIDEOTOOLBOX) for c in ("h264", "hevc")},
    **{f"{c}_mf": (c, MEDIA_FOUNDATION) for c in ("h264", "hevc", "av1")},
}
SOFTWARE = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1"}
HARDWARE_ORDER = {
    "linux": (NVENC, QSV, AMF, VAAPI),
    "win32": (NVENC, QSV, AMF, MEDIA_FOUNDATION),
    "darwin": (VIDEOTOOLBOX,),
}


def family_of(encoder: str) -> Family:
    return ENCODERS[encoder][1]


def candidates(codec: str, platform: str = sys.platform) -> list[str]:
    """The encoders `auto` tries for a codec here, best first."""
    key = "linux" if platform.startswith("linux") else platform
    hardware = [
        name
        for family in HARDWARE_ORDER.get(key, ())
        for name, (c, f) in ENCODERS.items()
        if f is family and c == codec
    ]
    return [*hardware, SOFTWARE[codec]]


def check_explicit(config: EncoderConfig) -> None:
    """An explicit encoder must be one we know, for the config's codec."""
    if config.encoder == "auto":
        return
    known = ENCODERS.get(config.encoder)
    if known is None:
        names = ", ".join(n for n, (c, _) in ENCODERS.items() if c == config.codec)
        raise ValueError(
            f"unknown encoder {config.encoder!r} for {config.codec}: use auto, {names}"
        )
    if known[0] != config.codec:
        raise ValueError(f"encoder {config.encoder!r} encodes {known[0]}, not {config.codec}")


def encoder_options(encoder: str, config: EncoderConfig) -> dict[str, str]:
    """FFmpeg options for a low-latency, constant-rate session of this family."""
    family = family_of(encoder)
    ceiling = config.ceiling_kbps
    vbv = {"maxrate": f"{ceiling}k", "bufsize": f"{ceiling}k"}
    options: dict[str, str]
    if family is X264:
        options = {"preset": "ultrafast", **vbv}
        if config.low_latency:
            options.update(tune="zerolatency", **{"rc-lookahead": "0"})
    elif family is X265:
        params = "log-level=error"
        if config.low_latency:
            params += ":bframes=0:rc-lookahead=0"
        options = {"preset": "ultrafast", "x265-params": params, **vbv}
        if config.low_latency:
            options["tune"] = "zerolatency"
    elif family is SVTAV1:
        structure = "pred-struct=1:" if config.low_latency else ""
        options = {"preset": "12", "svtav1-params": f"{structure}rc=2"}
    elif family is NVENC:
        options = {"preset": "p1", "rc": "cbr", **vbv}
        if config.low_latency:
            options.update(tune="ull", zerolatency="1", delay="0", **{"rc-lookahead": "0"})
    elif family is QSV:
        options = {"preset": "veryfast", "async_depth": "1", **vbv}
        if config.low_latency:
            options.update(look_ahead="0", low_delay_brc="1")
    elif family is AMF:
        options = {"usage": "ultralowlatency" if config.low_latency else "transcoding",
                   "quality": "speed", "rc": "cbr"}  # fmt: skip
    elif family is VIDEOTOOLBOX:
        options = {"realtime": "1" if config.low_latency else "0"}
    elif family is MEDIA_FOUNDATION:
        options = {"hw_encoding": "1", "scenario": "display_remoting", "rate_control": "cbr"}
    else:  # VA-API
        options = {"rc_mode": "CBR"}
    return {**options, **config.options}
