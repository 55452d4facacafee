"""Encoder sessions over PyAV: configuration, encoder choice with fallback, explicit teardown."""

from vramguard.encode.backends import ENCODERS, candidates
from vramguard.encode.config import CODECS, EncoderConfig
from vramguard.encode.session import (
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
    "EncoderChoice",
    "EncoderConfig",
    "EncoderError",
    "EncoderSession",
    "EncoderUnavailable",
    "SessionClosed",
    "candidates",
    "open_encoder",
]
