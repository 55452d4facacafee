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
    # Follows a new bit_rate while open (FFmpeg 8's source; measured here for libx264):
    # FFmpeg's libx264 reconfigures x264 when `bit_rate` moves, and x264 keeps a stream that
    # starts as CBR in CBR, moving its VBV cap and its target to each new rate up to the rate
    # it opened at; nvenc re-reads `bit_rate` every frame where the GPU supports dynamic
    # bitrate; qsv resets the encoder. libx265, libsvtav1, amf, VA-API and the rest keep the
    # rate they opened at.
    bitrate_in_place: bool = False
    # Opened at the config's ceiling (x264: bit_rate = maxrate = ceiling, the CBR that can
    # come down and go back up), the asked rate set before the first frame.
    opens_at_ceiling: bool = False
    # Each in-place change starts a new IDR (nvenc: forceIDR; qsv: an encoder reset).
    keyframe_on_rate_change: bool = False


X264 = Family("x264", False, bitrate_in_place=True, opens_at_ceiling=True)
X265 = Family("x265", False)
SVTAV1 = Family("svtav1", False)
NVENC = Family("nvenc", True, bitrate_in_place=True, keyframe_on_rate_change=True)
QSV = Family("qsv", True, input_pix_fmt="nv12", bitrate_in_place=True,
             keyframe_on_rate_change=True)  # fmt: skip
AMF = Family("amf", True, input_pix_fmt="nv12")
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


#: x264 options (FFmpeg's and x264-params') that take the rate out of `bit_rate`'s hands: a
#: session opened with any of them cannot be trusted to follow a new rate
_X264_RATE_OPTIONS = frozenset({"b", "crf", "crf_max", "qp", "maxrate", "bufsize", "nal-hrd"})
_X264_RATE_PARAMS = frozenset({
    "bitrate", "crf", "qp", "vbv-maxrate", "vbv_maxrate", "vbv-bufsize", "vbv_bufsize",
    "nal-hrd", "nal_hrd", "pass", "ratetol",
})  # fmt: skip


def adapts_in_place(encoder: str, config: EncoderConfig) -> bool:
    """Whether a session of `encoder` opened for `config` follows a new bitrate while open.

    libx264 does when vramguard opened it in CBR at the config's ceiling, which options of
    the user's own that set the rate control (crf, qp, VBV sizes, NAL HRD, two-pass) undo."""
    family = family_of(encoder)
    if not family.bitrate_in_place:
        return False
    if family is X264:
        if _X264_RATE_OPTIONS & set(config.options):
            return False
        params = ":".join(config.options.get(k, "") for k in ("x264-params", "x264opts"))
        keys = {item.split("=", 1)[0].strip() for item in params.split(":") if item.strip()}
        return not keys & _X264_RATE_PARAMS
    return True


def vbv_buffer_kbits(encoder: str, config: EncoderConfig) -> int:
    """The VBV buffer a session opens with: one second of its rate, except for a libx264
    session that changes rate in place, which gets a third of its ceiling (PyAV 18 cannot
    set `rc_buffer_size` after open, so the buffer cannot follow the rate). Measured at
    1080p on testsrc2, 30-second rungs of 5000/8000/2000/3500 kbps, ceiling 8000, against a
    fresh session per rung (bench/adapt.py): a buffer of the whole ceiling left rungs
    reached from below 4-6% short and 0.5 dB under; 1/2, 1/3 and 1/4 of it kept every rung
    within 3%, 2.1% and 1.9%, and PSNR within 0.29, 0.25 (0.30 with the soak's reference
    options) and 0.31 dB."""
    ceiling = config.ceiling_kbps
    adapting = config.max_bitrate_kbps is not None and adapts_in_place(encoder, config)
    return max(1, ceiling // 3) if adapting and family_of(encoder).opens_at_ceiling else ceiling


def encoder_options(encoder: str, config: EncoderConfig) -> dict[str, str]:
    """FFmpeg options for a low-latency, constant-rate session of this family."""
    family = family_of(encoder)
    ceiling = config.ceiling_kbps
    vbv = {"maxrate": f"{ceiling}k", "bufsize": f"{vbv_buffer_kbits(encoder, config)}k"}
    options: dict[str, str]
    if family is X264:
        options = {"preset": "ultrafast", **vbv}
        if config.low_latency:
            options.update(tune="zerolatency", **{"rc-lookahead": "0"})
    elif family is X265:
        params = "log-level=error"
        if config.low_latency:
            params += ":bframes=0:rc-lookahead=0"
        # a forced keyframe (a new client on a reused session) an IDR: FFmpeg's libx265
        # otherwise sends it to x265 as X265_TYPE_I, an I-frame a fresh decoder cannot start on
        options = {"preset": "ultrafast", "x265-params": params, "forced-idr": "1", **vbv}
        if config.low_latency:
            options["tune"] = "zerolatency"
    elif family is SVTAV1:
        structure = "pred-struct=1:" if config.low_latency else ""
        options = {"preset": "12", "svtav1-params": f"{structure}rc=2"}
    elif family is NVENC:
        # forced keyframes as IDRs (FFmpeg's nvenc: NV_ENC_PIC_FLAG_FORCEIDR, not FORCEINTRA)
        options = {"preset": "p1", "rc": "cbr", "forced-idr": "1", **vbv}
        if config.low_latency:
            options.update(tune="ull", zerolatency="1", delay="0", **{"rc-lookahead": "0"})
    elif family is QSV:
        # forced keyframes as IDRs (FFmpeg's qsv: MFX_FRAMETYPE_IDR, not I alone)
        options = {"preset": "veryfast", "async_depth": "1", "forced_idr": "1", **vbv}
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
