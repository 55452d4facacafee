"""Putting vramguard's encoder into aiortc: for every new connection (`install()`) or for
chosen ones (`use(pc)`).

aiortc makes a sender's encoder in `RTCRtpSender._next_encoded_frame` with the
`get_encoder` its `rtcrtpsender` module imported, and when the sender's RTP loop
(`RTCRtpSender._run_rtp`) ends it drops the encoder (`self.__encoder = None`), leaving it to
the garbage collector. The hooks wrap both: each sender's RTP loop runs in a scope (a
context variable, so one per sender task) that the wrapped `get_encoder` asks for the
encoder, and that closes every encoder made in it when the loop ends: after aiortc's own
cleanup, before the sender's `stop()` returns. `uninstall()` puts aiortc's functions back.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import aiortc.rtcrtpsender as _sender_module
from aiortc import RTCPeerConnection, RTCRtpCodecParameters, RTCRtpSender
from aiortc.codecs.base import Encoder

from vramguard.integrations.aiortc.encoder import H264Settings, VramguardH264Encoder
from vramguard.integrations.aiortc.ledger import EncoderLedger

#: codec -> our encoder, or None for aiortc's own
EncoderFactory = Callable[[RTCRtpCodecParameters], Encoder | None]
RunRtp = Callable[[RTCRtpSender, RTCRtpCodecParameters], Coroutine[Any, Any, None]]


class _Scope:
    """One sender's RTP loop: which factory makes its encoder, and what it made."""

    def __init__(self, factory: EncoderFactory | None) -> None:
        self.factory = factory
        self.encoders: list[Encoder] = []

    def close(self) -> None:
        for encoder in self.encoders:
            close = getattr(encoder, "close", None)
            if close is not None:
                close()
        self.encoders.clear()


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar(
    "vramguard_aiortc_scope", default=None
)
_LOCK = threading.Lock()
_chosen: weakref.WeakKeyDictionary[RTCRtpSender, EncoderFactory] = weakref.WeakKeyDictionary()
_default: EncoderFactory | None = None
_originals: tuple[Callable[[RTCRtpCodecParameters], Encoder], RunRtp] | None = None


def h264_factory(
    settings: H264Settings | None = None, ledger: EncoderLedger | None = None
) -> EncoderFactory:
    """vramguard's encoder for H.264; aiortc's own for every other codec (VP8, audio)."""

    def make(codec: RTCRtpCodecParameters) -> Encoder | None:
        if codec.mimeType.lower() != "video/h264":
            return None
        return VramguardH264Encoder(settings, ledger)

    return make


def _hook() -> None:
    """Wrap aiortc's functions, once; the wrappers read who chose what at each sender."""
    global _originals
    if _originals is not None:
        return
    get_encoder = _sender_module.get_encoder  # type: ignore[attr-defined]
    run_rtp: RunRtp = RTCRtpSender._run_rtp

    def hooked_get_encoder(codec: RTCRtpCodecParameters) -> Encoder:
        scope = _SCOPE.get()
        made = scope.factory(codec) if scope is not None and scope.factory else None
        if made is None:
            return get_encoder(codec)
        assert scope is not None
        scope.encoders.append(made)
        return made

    async def hooked_run_rtp(sender: RTCRtpSender, codec: RTCRtpCodecParameters) -> None:
        with _LOCK:
            factory = _chosen.get(sender, _default)
        scope = _Scope(factory)
        token = _SCOPE.set(scope)
        try:
            await run_rtp(sender, codec)
        finally:
            _SCOPE.reset(token)
            scope.close()

    _sender_module.get_encoder = hooked_get_encoder  # type: ignore[attr-defined]
    RTCRtpSender._run_rtp = hooked_run_rtp  # type: ignore[method-assign,assignment]
    _originals = (get_encoder, run_rtp)


def install(
    settings: H264Settings | None = None, ledger: EncoderLedger | None = None
) -> EncoderLedger:
    """vramguard's H.264 encoder for every sender that starts sending from now on (those
    `use()` chose keep their own). Returns the ledger its encoders report to."""
    global _default
    ledger = ledger or EncoderLedger()
    with _LOCK:
        _hook()
        _default = h264_factory(settings, ledger)
    return ledger


def use(
    target: RTCPeerConnection | RTCRtpSender,
    settings: H264Settings | None = None,
    ledger: EncoderLedger | None = None,
    *,
    factory: EncoderFactory | None = None,
) -> EncoderLedger:
    """vramguard's encoder for one connection's senders (call it after `addTrack`, before
    the offer and answer are applied: a sender already sending keeps its encoder) or for
    one sender. `factory` makes the encoders instead (settings and ledger then unused).
    Returns the ledger the encoders report to."""
    if factory is not None and (settings is not None or ledger is not None):
        raise ValueError("give a factory, or settings and a ledger, not both")
    if isinstance(target, RTCPeerConnection):
        senders = target.getSenders()
    elif isinstance(target, RTCRtpSender):
        senders = [target]
    else:
        raise TypeError(f"use() takes an RTCPeerConnection or RTCRtpSender, not {target!r}")
    ledger = ledger or EncoderLedger()
    chosen = factory or h264_factory(settings, ledger)
    with _LOCK:
        _hook()
        for sender in senders:
            _chosen[sender] = chosen
    return ledger


def installed() -> bool:
    """Whether `install()` is in force (senders `use()` chose aside)."""
    return _default is not None


def uninstall() -> None:
    """Put aiortc's own functions back and forget every choice. Senders already sending
    keep their encoders, and still close them when they stop."""
    global _default, _originals
    with _LOCK:
        _default = None
        _chosen.clear()
        if _originals is not None:
            get_encoder, run_rtp = _originals
            _sender_module.get_encoder = get_encoder  # type: ignore[attr-defined,assignment]
            RTCRtpSender._run_rtp = run_rtp  # type: ignore[method-assign,assignment]
            _originals = None
