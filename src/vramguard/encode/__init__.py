"""Encoder sessions over PyAV: configuration, encoder choice with fallback, explicit teardown."""

from vramguard.encode.backends import ENCODERS, adapts_in_place, candidates
from vramguard.encode.config import CODECS, EncoderConfig
from vramguard.encode.costs import warm_session_bytes
from vramguard.encode.session import (
    BitrateOutOfRange,
    EncoderChoice,
    EncoderError,
    EncoderSession,
    EncoderUnavailable,
    SessionClosed,
    open_encoder,
)

__all__ = [
    "CODECS",
    "ENCODERS",
    "BitrateOutOfRange",
    "EncoderChoice",
    "EncoderConfig",
    "EncoderError",
    "EncoderSession",
    "EncoderUnavailable",
    "SessionClosed",
    "adapts_in_place",
    "candidates",
    "open_encoder",
    "warm_session_bytes",
]
