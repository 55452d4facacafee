"""An encoder session over PyAV, with an explicit teardown and a drain that keeps it reusable.

Teardown order (`close()`): 1. end of stream is sent and the last packets collected;
2. the frame the session converted last is dropped; 3. the codec context, its only reference,
is dropped, which frees it at once (avcodec_free_context: the encoder's own buffers, then
any hardware frames and device context it holds). Nothing is left to the garbage collector:
a test checks the context is gone the moment `close()` returns.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import av.logging
from av.video.frame import PictureType

from vramguard import faults
from vramguard.encode.backends import (
    adapts_in_place,
    candidates,
    check_explicit,
    encoder_options,
    family_of,
)
from vramguard.encode.config import EncoderConfig
from vramguard.encode.scheduling import keep_scheduling
from vramguard.errors import VramguardError

Packet = Any  # av.Packet (generic in PyAV's stubs; its type parameter says nothing here)

_OPEN_LOCK = threading.Lock()  # FFmpeg's log level and capture are process-wide


class EncoderUnavailable(VramguardError, RuntimeError):
    """No encoder could be opened; the message says why for each one tried."""


class EncoderError(VramguardError, RuntimeError):
    """The encoder failed while encoding; the session is no longer usable."""


class SessionClosed(VramguardError, RuntimeError):
    """The session was used after close()."""


class BitrateOutOfRange(VramguardError, ValueError):
    """A rate a session cannot be asked for: zero, negative, or above its ceiling. The
    session is left as it was, still usable."""


@dataclass(frozen=True, slots=True)
class EncoderChoice:
    """Which encoder a session got, and why the ones before it failed."""

    encoder: str
    hardware: bool
    tried: tuple[tuple[str, str], ...] = ()  # (encoder, why it failed)

    @property
    def reason(self) -> str:
        if not self.tried:
            return f"{self.encoder} opened"
        failed = "; ".join(f"{name}: {why}" for name, why in self.tried)
        return f"{self.encoder} opened after {failed}"


def _ffmpeg_reason(exc: BaseException, logs: list[tuple[int, str, str]]) -> str:
    lines = [msg.strip() for level, _, msg in logs if level <= av.logging.ERROR and msg.strip()]
    return lines[0] if lines else (str(exc) or type(exc).__name__)


def _open_context(name: str, config: EncoderConfig) -> Any:
    # SVT-AV1 prints a banner per session on stderr unless told otherwise; keep a user's choice.
    os.environ.setdefault("SVT_LOG", "1")
    try:
        codec = av.codec.Codec(name, "w")
    except Exception:  # av.codec.codec.UnknownCodecError
        raise EncoderUnavailable("not in this FFmpeg build") from None
    family = family_of(name)
    # x264 opened in CBR at the ceiling follows each lower (and again higher) rate; opened
    # low, it never rises above the rate it opened at (FFmpeg passes the new bit_rate, x264
    # clamps it to the VBV maxrate it opened with)
    at_ceiling = family.opens_at_ceiling and adapts_in_place(name, config)
    ctx: Any = av.CodecContext.create(codec)
    ctx.width, ctx.height = config.width, config.height
    ctx.pix_fmt = family.input_pix_fmt or config.pix_fmt
    ctx.time_base = Fraction(1, config.fps)
    ctx.framerate = Fraction(config.fps, 1)
    ctx.bit_rate = (config.ceiling_kbps if at_ceiling else config.bitrate_kbps) * 1000
    ctx.gop_size = config.gop_frames
    if config.low_latency:
        ctx.max_b_frames = 0
    ctx.options = encoder_options(name, config)
    with _OPEN_LOCK:
        level = av.logging.get_level()
        av.logging.set_level(av.logging.ERROR)
        try:
            with av.logging.Capture() as logs:
                try:
                    faults.session_opened()  # test-only seam: a hardware session cap
                    try:
                        with keep_scheduling():  # SVT-AV1 as root: FIFO 99 otherwise
                            ctx.open()
                    except Exception:
                        faults.session_closed()
                        raise
                except Exception as exc:
                    raise EncoderUnavailable(_ffmpeg_reason(exc, logs)) from None
        finally:
            av.logging.set_level(level)
    # the asked rate, taken up by FFmpeg's libx264 before the first frame (reconfig_encoder)
    ctx.bit_rate = config.bitrate_kbps * 1000
    return ctx


def open_encoder(config: EncoderConfig) -> EncoderSession:
    """Open a session for `config`: its encoder, or with "auto" the first that opens.

    Raises ValueError for an encoder we do not know, EncoderUnavailable when none opens.
    """
    check_explicit(config)
    names = candidates(config.codec) if config.encoder == "auto" else [config.encoder]
    tried: list[tuple[str, str]] = []
    for name in names:
        try:
            ctx = _open_context(name, config)
        except EncoderUnavailable as exc:
            tried.append((name, str(exc)))
            continue
        choice = EncoderChoice(name, family_of(name).hardware, tuple(tried))
        return EncoderSession(config, name, ctx, choice)
    failures = "; ".join(f"{name}: {why}" for name, why in tried)
    raise EncoderUnavailable(f"no {config.codec} encoder opened ({failures})")


@dataclass
class SessionStats:
    frames_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    keyframes_forced: int = 0
    keyframes_out: int = 0
    #: keyframes out of the first frame after an in-place rate change that neither the GOP
    #: nor force_keyframe() asked for (nvenc forces an IDR at each change; x264 does not)
    keyframes_after_rate_change: int = 0
    bitrate_changes: int = 0
    opened_at: float = field(default_factory=time.monotonic)


class EncoderSession:
    """One open encoder. Not thread-safe: one client (one pool lease) at a time."""

    def __init__(self, config: EncoderConfig, encoder: str, ctx: Any, choice: EncoderChoice):
        self.config = config
        self.encoder = encoder
        self.choice = choice
        self.stats = SessionStats()
        self._ctx: Any = ctx
        self._family = family_of(encoder)
        self._input_format = ctx.pix_fmt
        self._pts = 0
        self._force_keyframe = False
        self._adapts = adapts_in_place(encoder, config)
        self._rate_changed = False  # an in-place change the next frame will carry
        self._since_keyframe = config.gop_frames  # packets since the last keyframe
        self._failure: str | None = None
        self._reusable = True
        self._stream_ended = False  # end of stream sent: FFmpeg's software encoders are done
        self._last_converted: Any = None

    # -- state ----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._ctx is None

    @property
    def bitrate_kbps(self) -> int:
        return self.config.bitrate_kbps

    @property
    def adapts_in_place(self) -> bool:
        """Whether `set_bitrate` changes this session's rate (else a new session is needed)."""
        return self._adapts

    @property
    def pending_frames(self) -> int:
        """Frames sent that have not come out as packets yet."""
        return self.stats.frames_in - self.stats.packets_out

    def healthy(self) -> bool:
        """Fit to hand to a new client: open, never failed, nothing left inside."""
        return not self.closed and self._failure is None and self._reusable

    def _live_context(self) -> Any:
        if self._ctx is None:
            raise SessionClosed(f"{self.encoder} session is closed")
        if self._failure is not None:
            raise EncoderError(f"{self.encoder} session failed earlier: {self._failure}")
        return self._ctx

    def _encoding_context(self) -> Any:
        """The context a frame may go to: not once its stream has ended (libx264 would
        raise, libsvtav1 blocks for ever waiting for a packet that never comes)."""
        ctx = self._live_context()
        if self._stream_ended:
            raise EncoderError(f"{self.encoder} session's stream has ended (drained)")
        return ctx

    # -- work -----------------------------------------------------------------------------

    def encode(self, frame: av.VideoFrame) -> list[Packet]:
        """Encode one frame; returns the packets that came out (one, in low-latency mode)."""
        ctx = self._encoding_context()
        if (frame.width, frame.height, frame.format.name) != (
            self.config.width, self.config.height, self._input_format,
        ):  # fmt: skip
            frame = frame.reformat(self.config.width, self.config.height, self._input_format)
            self._last_converted = frame
        # the session's own clock, in the context's time base: PyAV rescales a frame that
        # carries another time base (aiortc's 1/90000, a decoder's) and a frame counter read
        # in it would come out as pts 0 for every frame. The caller's pts is put back.
        caller_pts, caller_time_base = frame.pts, frame.time_base
        frame.pts, frame.time_base = self._pts, Fraction(1, self.config.fps)  # as opened
        self._pts += 1
        forced, after_change = self._force_keyframe, self._rate_changed
        frame.pict_type = PictureType.I if forced else PictureType.NONE
        try:
            faults.hit("encode")  # test-only seam: the device lost mid-stream
            packets: list[Packet] = ctx.encode(frame)
        except Exception as exc:
            self._failure = str(exc) or type(exc).__name__
            raise EncoderError(f"{self.encoder}: {self._failure}") from exc
        finally:
            frame.pict_type = PictureType.NONE  # a pooled frame must not stay a keyframe
            frame.pts = caller_pts
            if caller_time_base is not None:  # PyAV cannot set it back to None
                frame.time_base = caller_time_base
        if forced:
            self._force_keyframe = False
            self.stats.keyframes_forced += 1
        self._rate_changed = False
        self.stats.frames_in += 1
        self._count(packets)
        self._count_keyframes(packets, forced, after_change)
        return packets

    def _count_keyframes(self, packets: list[Packet], forced: bool, after_change: bool) -> None:
        """Keyframes out, and those a rate change caused: a keyframe the GOP did not
        schedule (fewer packets than a GOP since the last) nor the caller force, out of the
        first frame after the change (a packet per frame: low-latency sessions)."""
        for packet in packets:
            if not packet.is_keyframe:
                self._since_keyframe += 1
                continue
            scheduled = self._since_keyframe + 1 >= self.config.gop_frames
            if after_change and not forced and not scheduled:
                self.stats.keyframes_after_rate_change += 1
            self.stats.keyframes_out += 1
            self._since_keyframe = 0

    def _count(self, packets: list[Packet]) -> None:
        self.stats.packets_out += len(packets)
        self.stats.bytes_out += sum(p.size for p in packets)

    def fence(self) -> Callable[[], bool]:
        """A callable that turns True once the last frame sent has come out as a packet (or
        the session closed): until then the encoder may still read that frame's buffer."""
        frame_index = self.stats.frames_in - 1
        return lambda: self._ctx is None or self.stats.packets_out > frame_index

    def force_keyframe(self) -> None:
        """The next frame is encoded as a keyframe (a new client starts with one)."""
        self._live_context()
        self._force_keyframe = True

    def set_bitrate(self, kbps: int) -> bool:
        """Change the target bitrate in place, from the next frame on; True when the session
        now encodes at `kbps` (already did, or changed), False where this encoder cannot
        change it (`config` is then left as it was, and the caller needs a session opened at
        the new rate). libx264 follows it without a keyframe; nvenc and qsv start an IDR.

        Raises BitrateOutOfRange for zero, a negative rate or one above the ceiling the
        session opened with (`max_bitrate_kbps`); the session stays as it was."""
        ctx = self._live_context()
        ceiling = self.config.ceiling_kbps
        if isinstance(kbps, bool) or not isinstance(kbps, int) or not 1 <= kbps <= ceiling:
            raise BitrateOutOfRange(
                f"cannot set {kbps!r} kbps on this {self.encoder} session: its range is "
                f"1 to its ceiling of {ceiling} kbps (max_bitrate_kbps when opened)"
            )
        if kbps == self.config.bitrate_kbps:
            return True
        if not self._adapts:
            return False
        ctx.bit_rate = kbps * 1000
        self.config = self.config.with_bitrate(kbps)
        self.stats.bitrate_changes += 1
        self._rate_changed = True
        return True

    def drain(self) -> list[Packet]:
        """Every packet still inside the encoder, with the session left usable.

        In low-latency mode nothing is inside (each frame gave its packet), so this returns
        at once. An encoder that holds frames can only give them up by ending its stream
        (FFmpeg's software encoders cannot be restarted after that): those packets are
        returned and the session is marked not reusable, so a pool closes it."""
        ctx = self._live_context()
        if self.pending_frames <= 0:
            return []
        packets = self._end_stream(ctx)
        self._reusable = False
        return packets

    def _end_stream(self, ctx: Any) -> list[Packet]:
        self._stream_ended = True
        try:
            packets: list[Packet] = ctx.encode(None)
        except Exception as exc:  # an encoder that already failed has nothing to give
            self._failure = self._failure or str(exc)
            return []
        self._count(packets)
        return packets

    def close(self) -> list[Packet]:
        """End the stream and free the encoder, in the documented order. Idempotent;
        returns the packets the end of stream gave."""
        ctx = self._ctx
        if ctx is None:
            return []
        packets: list[Packet] = []
        if self._failure is None and self.stats.frames_in:
            packets = self._end_stream(ctx)
        self._last_converted = None
        self._ctx = None
        faults.session_closed()
        del ctx  # the last reference: FFmpeg frees the context now
        return packets
