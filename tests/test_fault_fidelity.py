"""The injected faults fail as the real calls do: the exception class and errno that PyAV
raises for the FFmpeg error code the vendor failure maps to, so the code under test meets
what it would meet on hardware (its `except` clauses are exercised, not our own class)."""

from __future__ import annotations

import errno

import av
import pytest

from vramguard import faults
from vramguard.encode import EncoderConfig, open_encoder
from vramguard.encode.session import EncoderUnavailable


def raised_by_pyav(ffmpeg_code: int) -> BaseException:
    """What PyAV raises for an FFmpeg return code (its own err_check, not a copy of it)."""
    with pytest.raises(av.error.FFmpegError) as caught:
        av.error.err_check(ffmpeg_code)
    return caught.value


@pytest.mark.parametrize(
    ("site", "ffmpeg_code"),
    [("encode", -faults.AVERROR_EXTERNAL_ERRNO), ("open", -errno.ENOMEM)],
)
def test_an_injected_fault_has_the_class_and_errno_pyav_gives_that_failure(
    site: str, ffmpeg_code: int
) -> None:
    real = raised_by_pyav(ffmpeg_code)
    injected = faults.error(site)
    assert type(injected) is type(real)
    assert injected.errno == real.errno  # type: ignore[attr-defined]


def test_an_open_refused_by_the_session_cap_is_pyavs_memory_error_turned_into_a_reason() -> None:
    faults.install("open-cap=0")
    try:
        with pytest.raises(EncoderUnavailable, match="OpenEncodeSessionEx"):
            open_encoder(EncoderConfig("h264", 64, 64, 30, 300, encoder="libx264"))
        assert faults.open_sessions() == 0
    finally:
        faults.install(None)
    assert isinstance(faults.error("open"), MemoryError)  # av.error.MemoryError is one
