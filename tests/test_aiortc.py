"""vramguard's encoder inside aiortc: a real loopback WebRTC session (two RTCPeerConnections
over this host's addresses, H.264, real libx264 and real decoding on the receiving side)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import numpy as np
import pytest

pytest.importorskip("aiortc")  # an optional extra; CI installs it (.[dev])

import aiortc.codecs
import aiortc.rtcrtpsender
from aiortc.codecs.h264 import H264Encoder, h264_depayload

from vramguard.encode import EncoderConfig, SessionClosed, open_encoder
from vramguard.integrations.aiortc import (
    EncoderLedger,
    H264Settings,
    LedgerStats,
    VramguardH264Encoder,
    install,
    installed,
    uninstall,
    use,
)
from vramguard.integrations.aiortc.loopback import Loopback, Received
from vramguard.sources import SyntheticSource


def frames(n: int, width: int = 320, height: int = 240) -> Iterator[av.VideoFrame]:
    source, buffer = SyntheticSource(width, height), np.empty((height * 3 // 2, width), np.uint8)
    for i in range(n):
        source.draw(buffer, i)
        frame = av.VideoFrame.from_ndarray(buffer, format="yuv420p")
        frame.pts, frame.time_base = 3000 * i, Fraction(1, 90000)
        yield frame


@dataclass
class Session:
    """What one loopback session through vramguard's encoder showed, step by step."""

    stats: dict[str, LedgerStats] = field(default_factory=dict)  # step -> ledger stats
    received: dict[str, Received] = field(default_factory=dict)
    sessions: dict[str, Any] = field(default_factory=dict)  # step -> the open session
    bitrate_kbps: dict[str, int] = field(default_factory=dict)
    encoder: VramguardH264Encoder | None = None
    after_close: LedgerStats | None = None


class HeldRate(VramguardH264Encoder):
    """vramguard's encoder with the receiver's REMB held off, so that the test alone sets
    the rate (a REMB landing between two checks would otherwise move it)."""

    @property
    def target_bitrate(self) -> int:
        return VramguardH264Encoder.target_bitrate.fget(self)  # type: ignore[attr-defined,no-any-return]

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        pass  # a REMB

    def set_target(self, bitrate: int) -> None:
        VramguardH264Encoder.target_bitrate.fset(self, bitrate)  # type: ignore[attr-defined]


async def until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Wait for the session to get there (a loaded machine is slow, never wrong)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the loopback session did not get there in time")
        await asyncio.sleep(0.05)


async def _run_session() -> Session:
    ledger, made = EncoderLedger(), []

    def factory(codec: Any) -> Any:
        made.append(HeldRate(H264Settings(), ledger))
        return made[-1]

    seen = Session()
    loopback = await Loopback.open(320, 240, lambda pc: use(pc, factory=factory))
    received = loopback.received

    def encoded() -> int:
        return ledger.stats().totals.frames_encoded

    def mark(step: str) -> None:
        encoder = made[0]
        seen.stats[step] = ledger.stats()
        seen.received[step] = Received(received.frames, received.keyframes, dict(received.sizes))
        seen.sessions[step] = encoder.session
        seen.bitrate_kbps[step] = encoder.session.bitrate_kbps if encoder.session else 0

    try:
        await until(lambda: received.frames >= 10)
        mark("started")
        made[0].set_target(700_000)
        count = encoded()
        await until(lambda: encoded() >= count + 5)
        mark("rate")
        await loopback.receiver._send_rtcp_pli(loopback.sender._ssrc)  # a real PLI over RTCP
        await until(lambda: received.keyframes >= 2)
        count = received.frames
        await until(lambda: received.frames >= count + 3)
        mark("pli")
        loopback.track.resize(640, 360)
        await until(lambda: received.sizes.get((640, 360), 0) >= 5)
        mark("resized")
    finally:
        await loopback.close()
    seen.encoder = made[0]
    seen.after_close = ledger.stats()
    return seen


@pytest.fixture(scope="module")
def session() -> Session:
    return asyncio.run(_run_session())


def test_frames_arrive_and_decode(session: Session) -> None:
    received, stats = session.received["started"], session.stats["started"]
    assert received.frames >= 10
    assert received.sizes == {(320, 240): received.frames}
    assert received.frames <= stats.totals.frames_encoded
    # aiortc's receiver asks for a keyframe (a PLI) when a frame fails to decode: none did
    assert stats.totals.keyframes_asked == 0


def test_a_rate_change_is_taken_in_place(session: Session) -> None:
    before, after = session.stats["started"], session.stats["rate"]
    assert session.sessions["rate"] is session.sessions["started"]
    assert session.bitrate_kbps["rate"] == 700
    assert after.totals.rate_changes_in_place == before.totals.rate_changes_in_place + 1
    assert after.totals.sessions_opened == 1
    assert after.totals.keyframes == 1 and after.totals.keyframes_after_rate_change == 0
    assert session.received["rate"].keyframes == 1


def test_a_keyframe_request_gives_a_keyframe(session: Session) -> None:
    before, after = session.stats["rate"], session.stats["pli"]
    assert after.totals.keyframes_asked - before.totals.keyframes_asked == 1
    assert after.totals.keyframes - before.totals.keyframes == 1
    assert session.received["pli"].keyframes - session.received["rate"].keyframes == 1
    assert session.sessions["pli"] is session.sessions["started"]


def test_a_frame_size_change_opens_one_new_session(session: Session) -> None:
    after = session.stats["resized"]
    assert session.sessions["resized"] is not session.sessions["pli"]
    assert (
        after.totals.sessions_opened,
        after.totals.sessions_closed,
        after.totals.size_changes,
    ) == (2, 1, 1)
    assert session.sessions["resized"].config.width == 640
    assert session.received["resized"].sizes.get((640, 360), 0) >= 5
    assert after.sessions_active == 1 and after.session_bytes > 0


def test_closing_the_connection_closes_the_encoder(session: Session) -> None:
    assert session.after_close is not None
    assert session.after_close.encoders_active == 0
    assert session.after_close.sessions_active == 0
    assert session.after_close.totals.sessions_closed == session.after_close.totals.sessions_opened
    assert session.encoder is not None and session.encoder.session is None
    with pytest.raises(SessionClosed):
        session.encoder.encode(next(frames(1)))


def test_install_serves_every_new_connection_and_uninstall_puts_aiortc_back() -> None:
    async def run() -> LedgerStats:
        ledger = install()
        try:
            loopback = await Loopback.open(160, 120)
            try:
                await until(lambda: loopback.received.frames >= 3)
            finally:
                await loopback.close()
        finally:
            uninstall()
        return ledger.stats()

    stats = asyncio.run(run())
    assert stats.totals.frames_encoded > 0 and stats.totals.sessions_opened == 1
    assert stats.encoders_active == 0
    assert not installed()
    assert aiortc.rtcrtpsender.get_encoder is aiortc.codecs.get_encoder


def test_keyframes_come_only_on_the_first_frame_and_when_asked() -> None:
    encoder = VramguardH264Encoder()
    # these pictures make x264's scene-cut detection start a keyframe of its own (at 60)
    for i, frame in enumerate(frames(90, 640, 360)):
        encoder.encode(frame, force_keyframe=i == 20)
    encoder.close()
    assert (encoder.counters.keyframes, encoder.counters.keyframes_asked) == (2, 1)


def test_the_stream_is_constrained_baseline_as_aiortc_negotiates() -> None:
    encoder = VramguardH264Encoder()
    payloads, timestamp = encoder.encode(next(frames(1)))
    encoder.close()
    stream = b"".join(h264_depayload(p) for p in payloads)
    sps = stream.index(b"\x00\x00\x00\x01\x67") + 5
    assert stream[sps] == 66  # profile_idc: Baseline
    assert stream[sps + 1] & 0x40  # constraint_set1: Constrained Baseline
    assert timestamp == 0


def test_target_bitrate_clamps_like_aiortcs() -> None:
    encoder = VramguardH264Encoder()
    stock = H264Encoder()
    for bps in (100_000, 1_234_567, 9_000_000):
        encoder.target_bitrate = bps
        stock.target_bitrate = bps
        assert encoder.target_bitrate == stock.target_bitrate // 1000 * 1000
    encoder.close()


def test_an_encoder_that_cannot_change_rate_in_place_is_reopened_past_ten_percent() -> None:
    # crf takes the rate out of bit_rate's hands: libx264 then cannot follow a new rate
    encoder = VramguardH264Encoder(H264Settings(encoder="libx264", options={"crf": "23"}))
    stream = frames(3)
    encoder.encode(next(stream))
    encoder.target_bitrate = 1_050_000  # 5%: kept, as aiortc does
    encoder.encode(next(stream))
    encoder.target_bitrate = 2_000_000
    encoder.encode(next(stream))
    encoder.close()
    counters = encoder.counters
    assert (counters.sessions_opened, counters.rate_changes_reopened) == (2, 1)
    assert counters.rate_changes_in_place == 0


def test_pack_gives_aiortcs_own_payloads() -> None:
    session = open_encoder(EncoderConfig("h264", 320, 240, 30, 800, encoder="libx264"))
    packets = [p for frame in frames(2) for p in session.encode(frame)]
    session.close()
    encoder = VramguardH264Encoder()
    for packet in packets:
        assert encoder.pack(packet) == H264Encoder().pack(packet)
    encoder.close()


def test_bad_settings_and_frames_get_clear_errors() -> None:
    with pytest.raises(ValueError, match="min <= max"):
        H264Settings(min_bitrate_kbps=3000, max_bitrate_kbps=500)
    with pytest.raises(ValueError, match="unknown encoder"):
        H264Settings(encoder="h264_nonesuch")
    encoder = VramguardH264Encoder()
    with pytest.raises(TypeError, match="video frames"):
        encoder.encode(av.AudioFrame(format="s16", layout="mono", samples=160))
    frame = next(frames(1))
    frame.pts = None
    with pytest.raises(ValueError, match="pts"):
        encoder.encode(frame)
    encoder.close()
    with pytest.raises(TypeError, match="RTCPeerConnection"):
        use("not a connection")  # type: ignore[arg-type]


def test_without_aiortc_the_integration_says_so_in_one_line_and_vramguard_works() -> None:
    script = (
        "import sys; sys.modules['aiortc'] = None\n"
        "import vramguard\n"
        "try:\n"
        "    import vramguard.integrations.aiortc\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
        "cfg = vramguard.EncoderConfig('h264', 160, 120, 30, 300, encoder='libx264')\n"
        "vramguard.open_encoder(cfg).close(); print('encoders ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "IntegrationUnavailable vramguard.integrations.aiortc needs aiortc, which is not "
        "installed: pip install 'vramguard[aiortc]'"
    )
    assert lines[1:] == ["encoders ok"]


def test_the_ledger_gives_the_tracker_what_the_encoders_hold() -> None:
    from vramguard import MemoryTracker

    ledger, tracker = EncoderLedger(), MemoryTracker()
    encoder = VramguardH264Encoder(ledger=ledger)
    for frame in frames(3):
        encoder.encode(frame)
    ledger.track(tracker)
    encoder.close()
    ledger.track(tracker)
    first, last = tracker.samples[0], tracker.samples[-1]
    assert (first.sessions_active, first.frames_encoded) == (1, 3)
    assert (last.sessions_active, last.frames_encoded) == (0, 3)
    assert first.host_rss_bytes is not None and first.host_rss_bytes > 0
    assert last.t >= first.t
    # wall_s counts from the ledger's start (docs/log-format.md), not the epoch
    assert first.wall_s is not None and 0 <= first.wall_s <= last.wall_s < 3600
