"""An H.264 encoder for aiortc on vramguard's EncoderSession: it follows aiortc's target
bitrate (the receiver's REMB) in place, and opens a new session only when the frame size
changes.

aiortc's own `H264Encoder` drops its libx264 context and opens a new one whenever the target
moves by more than 10%, each new one starting with an IDR. This one keeps its session:
libx264 (opened in CBR at the ceiling) takes each new rate without a keyframe; nvenc and qsv
take it with an IDR (FFmpeg's wrappers); an encoder that cannot change rate while open is
reopened only on a change over 10%, as aiortc does. Keyframes come on a session's first
frame and when aiortc asks (a PLI or FIR): no periodic ones unless `gop` says, no scene cuts.
The bitstream is what aiortc's encoder makes (libx264, its x264 preset, tune zerolatency,
Constrained Baseline, level 3.1), and its RTP packetization (FU-A, STAP-A) is aiortc's own:
its functions are called, not copied.

Lifecycle: the first frame opens a session at its size; `close()` waits for a frame being
encoded on aiortc's encoding thread, closes the session (EncoderSession's teardown order),
then leaves the ledger. `install()`/`use()` call it when the sender's RTP loop ends.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc.codecs.base import Encoder
from aiortc.codecs.h264 import MAX_BITRATE, MAX_FRAME_RATE, MIN_BITRATE, H264Encoder
from aiortc.mediastreams import VIDEO_TIME_BASE, convert_timebase

from vramguard.encode import (
    EncoderConfig,
    EncoderSession,
    EncoderUnavailable,
    SessionClosed,
    candidates,
    open_encoder,
)
from vramguard.encode.backends import check_explicit, family_of
from vramguard.integrations.aiortc.ledger import EncoderCounters, EncoderLedger

#: aiortc's rule for an encoder that cannot change rate while open: reopen past 10%
REOPEN_RATIO = 0.1
#: a GOP no stream reaches: keyframes only on a session's first frame and when asked
ENDLESS_GOP = 1 << 30

#: per encoder family, what makes its stream the one aiortc's encoder sends: libx264 as
#: aiortc opens it (x264's default preset, which vramguard would otherwise make ultrafast;
#: the Constrained Baseline profile aiortc negotiates, level 3.1), without scene-cut
#: keyframes; the profile by the name each hardware wrapper knows (an unknown value fails
#: the open, and amf and VA-API call it otherwise; not measurable here, so not set)
WEBRTC_OPTIONS: dict[str, dict[str, str]] = {
    "x264": {"preset": "medium", "profile": "baseline", "level": "31",
             "x264-params": "scenecut=0"},
    "nvenc": {"profile": "baseline"},
    "qsv": {"profile": "baseline"},
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class H264Settings:
    """How the encoder opens its sessions. Rates clamp to [`min_bitrate_kbps`,
    `max_bitrate_kbps`] as aiortc's do (500 to 3000 kbps); `max_bitrate_kbps` is also the
    ceiling an in-place change can reach. `encoder` is "auto" (hardware first, as
    `open_encoder`) or an FFmpeg encoder name; `options` go over the per-family ones."""

    encoder: str = "auto"
    min_bitrate_kbps: int = MIN_BITRATE // 1000
    max_bitrate_kbps: int = MAX_BITRATE // 1000
    fps: int = MAX_FRAME_RATE
    gop: int | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        low, high = self.min_bitrate_kbps, self.max_bitrate_kbps
        if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
            raise ValueError(f"bitrates must satisfy 1 <= min <= max kbps, not {low!r}, {high!r}")
        # the rest is EncoderConfig's and check_explicit's to check, with their own messages
        check_explicit(EncoderConfig("h264", 16, 16, self.fps, low, self.encoder, gop=self.gop,
                                     max_bitrate_kbps=high))  # fmt: skip

    def clamp_kbps(self, bits_per_s: int) -> int:
        return max(self.min_bitrate_kbps, min(bits_per_s // 1000, self.max_bitrate_kbps))

    def config(self, width: int, height: int, kbps: int, encoder: str) -> EncoderConfig:
        family = family_of(encoder).name
        return EncoderConfig(
            "h264", width, height, self.fps, kbps, encoder,
            gop=self.gop or ENDLESS_GOP, max_bitrate_kbps=self.max_bitrate_kbps,
            options={**WEBRTC_OPTIONS.get(family, {}), **self.options},
        )  # fmt: skip

    def open(self, width: int, height: int, kbps: int) -> EncoderSession:
        """A session for frames of this size: the first encoder that opens, best first, each
        with its own family's options (hence not `open_encoder`'s "auto")."""
        names = candidates("h264") if self.encoder == "auto" else [self.encoder]
        tried: list[str] = []
        for name in names:
            try:
                return open_encoder(self.config(width, height, kbps, name))
            except EncoderUnavailable as exc:
                tried.append(f"{name}: {exc}")
        raise EncoderUnavailable(f"no h264 encoder opened ({'; '.join(tried)})")


class VramguardH264Encoder(Encoder):
    """aiortc's `Encoder` interface (`encode`, `pack`, `target_bitrate`) over one
    EncoderSession at a time. aiortc calls `encode` on an executor thread and sets
    `target_bitrate` from its event loop."""

    def __init__(
        self, settings: H264Settings | None = None, ledger: EncoderLedger | None = None
    ) -> None:
        self.settings = settings or H264Settings()
        self.ledger = ledger or EncoderLedger()
        self.counters = EncoderCounters()
        self._target_kbps = self.settings.clamp_kbps(1_000_000)  # aiortc's DEFAULT_BITRATE
        self._session: EncoderSession | None = None
        self._lock = threading.Lock()  # one encode at a time, and close() waits for it
        self._closed = False
        self.ledger.encoder_opened()

    # -- aiortc's interface -------------------------------------------------------------

    @property
    def target_bitrate(self) -> int:
        """Target bitrate in bits per second (aiortc sets it from each REMB)."""
        return self._target_kbps * 1000

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        self._target_kbps = self.settings.clamp_kbps(int(bitrate))

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        if not isinstance(frame, av.VideoFrame):
            raise TypeError(f"an H.264 encoder takes video frames, not {type(frame).__name__}")
        if frame.pts is None or frame.time_base is None:
            raise ValueError("a frame to send needs a pts and a time_base (aiortc sets both)")
        timestamp = convert_timebase(frame.pts, frame.time_base, VIDEO_TIME_BASE)
        with self._lock:
            session = self._session_for(frame.width, frame.height)
            session = self._follow_target(session)
            if force_keyframe:
                session.force_keyframe()
            after_change = session.stats.keyframes_after_rate_change
            packets = session.encode(frame)
            data = b"".join(bytes(p) for p in packets)
            self._count(
                frames_encoded=1,
                bytes_out=len(data),
                keyframes=sum(1 for p in packets if p.is_keyframe),
                keyframes_asked=int(force_keyframe),
                keyframes_after_rate_change=session.stats.keyframes_after_rate_change
                - after_change,
            )
        return H264Encoder._packetize(H264Encoder._split_bitstream(data)), timestamp

    def pack(self, packet: Any) -> tuple[list[bytes], int]:
        """Payloads of an already encoded packet (a relayed stream): aiortc's own way."""
        payloads = H264Encoder._packetize(H264Encoder._split_bitstream(bytes(packet)))
        assert packet.pts is not None and packet.time_base is not None
        return payloads, convert_timebase(packet.pts, packet.time_base, VIDEO_TIME_BASE)

    # -- sessions -----------------------------------------------------------------------

    @property
    def session(self) -> EncoderSession | None:
        """The open session (None before the first frame and after close)."""
        return self._session

    def _session_for(self, width: int, height: int) -> EncoderSession:
        if self._closed:
            raise SessionClosed("this aiortc encoder is closed")
        session = self._session
        if session is not None and (session.config.width, session.config.height) == (
            width, height,
        ):  # fmt: skip
            return session
        if session is not None:
            self._count(size_changes=1)
            self._close_session()
        return self._open_session(width, height, self._target_kbps)

    def _open_session(self, width: int, height: int, kbps: int) -> EncoderSession:
        session = self.settings.open(width, height, kbps)
        self._session = session
        self.ledger.session_opened(id(session), session.config)
        self._count(sessions_opened=1)
        return session

    def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        session.close()  # low delay: nothing is left inside to send
        self.ledger.session_closed(id(session))
        self._count(sessions_closed=1)

    def _follow_target(self, session: EncoderSession) -> EncoderSession:
        """The session at the target rate: this one, changed in place where it can."""
        kbps = self._target_kbps
        now = session.bitrate_kbps
        if kbps == now:
            return session
        if session.set_bitrate(kbps):
            self._count(rate_changes_in_place=1)
        elif abs(kbps - now) > REOPEN_RATIO * now:
            config = session.config
            self._close_session()
            session = self._open_session(config.width, config.height, kbps)
            self._count(rate_changes_reopened=1)
        return session

    def _count(self, **deltas: int) -> None:
        self.counters.add(**deltas)
        self.ledger.count(**deltas)

    def close(self) -> None:
        """Close the session (waiting for a frame being encoded) and leave the ledger.
        Idempotent; `encode` raises SessionClosed afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._close_session()
            self.ledger.encoder_closed()
