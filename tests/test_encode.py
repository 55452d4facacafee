"""Real PyAV encoder sessions at small sizes: what goes in comes back out, decodably."""

from __future__ import annotations

import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from vramguard.encode import (
    BitrateOutOfRange,
    EncoderConfig,
    EncoderError,
    EncoderUnavailable,
    SessionClosed,
    candidates,
    open_encoder,
)

DECODERS = {"h264": "h264", "hevc": "hevc", "av1": "libdav1d"}


def frames(n: int, width: int = 320, height: int = 240, start: int = 0) -> list[av.VideoFrame]:
    """Moving test pictures with some texture, as an encoder would see from a game."""
    yy, xx = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(start)
    out = []
    for i in range(start, start + n):
        image = np.stack([(xx + 3 * i) % 256, (yy * 2 + i) % 256, ((xx ^ yy) + 5 * i) % 256], -1)
        image = (image + rng.integers(0, 20, image.shape)).astype(np.uint8)
        out.append(av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p"))
    return out


def decode(codec: str, packets: list[av.Packet]) -> list[av.VideoFrame]:
    decoder = av.CodecContext.create(DECODERS[codec], "r")
    decoded = []
    for packet in packets:
        decoded += decoder.decode(packet)
    decoded += decoder.decode(None)
    return decoded


@pytest.mark.parametrize("codec", ["h264", "hevc", "av1"])
def test_packets_decode_back_to_the_same_number_of_frames(codec: str) -> None:
    session = open_encoder(EncoderConfig(codec, 320, 240, 30, 800))
    packets = []
    for frame in frames(24):
        packets += session.encode(frame)
    packets += session.drain()
    assert session.healthy()
    packets += session.close()
    decoded = decode(codec, packets)
    assert len(decoded) == 24
    assert (decoded[0].width, decoded[0].height) == (320, 240)


@pytest.mark.parametrize("codec", ["h264", "av1"])
def test_low_latency_sessions_give_a_packet_per_frame_so_drain_keeps_them(codec: str) -> None:
    session = open_encoder(EncoderConfig(codec, 320, 240, 30, 800))
    counts = [len(session.encode(f)) for f in frames(10)]
    assert counts == [1] * 10
    assert session.drain() == [] and session.healthy()
    session.close()


@pytest.mark.parametrize("codec", ["h264", "hevc", "av1"])
def test_a_forced_keyframe_starts_a_new_decodable_stream(codec: str) -> None:
    """What a new client on a reused session gets: an IDR (libx265 without forced-idr made
    it an I-frame no fresh decoder starts on: 0 of 10 frames decoded)."""
    session = open_encoder(EncoderConfig(codec, 320, 240, 30, 800, gop=600))
    first = [p for f in frames(10) for p in session.encode(f)]
    session.force_keyframe()
    second = [p for f in frames(10, start=10) for p in session.encode(f)]
    session.close()
    assert second[0].is_keyframe
    assert not any(p.is_keyframe for p in first[1:] + second[1:])
    assert len(decode(codec, second)) == 10  # a new client needs nothing from before


def measured_kbps(session: object, start: int, n: int = 90) -> float:
    packets = [p for f in frames(n, start=start) for p in session.encode(f)]  # type: ignore[attr-defined]
    return sum(p.size for p in packets[30:]) * 8 / ((n - 30) / 30) / 1000


@pytest.mark.parametrize("codec", ["h264", "hevc", "av1"])
def test_set_bitrate_says_true_only_where_the_rate_really_changes(codec: str) -> None:
    session = open_encoder(EncoderConfig(codec, 320, 240, 30, 300, max_bitrate_kbps=3000))
    before = measured_kbps(session, 0)
    changed = session.set_bitrate(2400)
    after = measured_kbps(session, 90)
    session.close()
    if changed:
        assert after > 3 * before
    else:  # the encoder kept its rate: False was the truth, and a new session is needed
        assert after < 1.5 * before
        fresh = open_encoder(EncoderConfig(codec, 320, 240, 30, 2400, max_bitrate_kbps=3000))
        assert measured_kbps(fresh, 90) > 3 * before
        fresh.close()


def test_libx264_changes_rate_in_place_down_and_up_without_keyframes() -> None:
    config = EncoderConfig("h264", 320, 240, 30, 2400, encoder="libx264", gop=900,
                           max_bitrate_kbps=3000)  # fmt: skip
    session = open_encoder(config)
    assert session.adapts_in_place
    rates = {}
    for step, kbps in enumerate([2400, 300, 2400, 600]):
        assert session.set_bitrate(kbps)
        assert session.config.bitrate_kbps == kbps  # config says what the encoder does
        rates[step] = measured_kbps(session, 90 * step)
    stats = session.stats
    session.close()
    assert rates[0] > 5 * rates[1] and rates[2] > 5 * rates[1]  # down, then up again
    assert 2 * rates[1] < rates[3] < rates[2] / 2  # and down to another rate
    assert 0.7 * 300 < rates[1] < 1.3 * 300 and 0.7 * 2400 < rates[2] < 1.3 * 2400
    assert stats.bitrate_changes == 3
    assert stats.keyframes_out == 1  # the first frame's only: a change costs no keyframe
    assert stats.keyframes_after_rate_change == 0


@pytest.mark.parametrize("codec", ["hevc", "av1"])
def test_encoders_that_cannot_change_rate_say_false_and_keep_their_config(codec: str) -> None:
    session = open_encoder(EncoderConfig(codec, 320, 240, 30, 300, max_bitrate_kbps=3000))
    assert not session.adapts_in_place
    assert session.set_bitrate(2400) is False
    assert session.config.bitrate_kbps == 300 and session.stats.bitrate_changes == 0
    assert session.set_bitrate(300) is True  # the rate it has
    session.close()


def test_libx264_with_its_own_rate_control_options_does_not_claim_to_adapt() -> None:
    for options in ({"crf": "23"}, {"x264-params": "vbv-bufsize=500"}):
        config = EncoderConfig("h264", 320, 240, 30, 300, encoder="libx264",
                               max_bitrate_kbps=3000, options=options)  # fmt: skip
        session = open_encoder(config)
        assert not session.adapts_in_place and session.set_bitrate(2400) is False
        session.close()


@pytest.mark.parametrize("kbps", [3001, 0, -5])
def test_a_rate_out_of_range_names_the_ceiling_and_the_session_goes_on(kbps: int) -> None:
    config = EncoderConfig("h264", 320, 240, 30, 1000, encoder="libx264", max_bitrate_kbps=3000)
    session = open_encoder(config)
    session.encode(frames(1)[0])
    with pytest.raises(BitrateOutOfRange, match="ceiling of 3000 kbps"):
        session.set_bitrate(kbps)
    assert session.config.bitrate_kbps == 1000 and session.healthy()
    assert len(session.encode(frames(1, start=1)[0])) == 1
    session.close()


def test_auto_falls_back_to_software_and_says_why_hardware_failed() -> None:
    session = open_encoder(EncoderConfig("h264", 320, 240, 30, 500))
    try:
        assert session.encoder == "libx264" or session.choice.hardware
        if session.encoder == "libx264" and sys.platform.startswith("linux"):
            tried = dict(session.choice.tried)
            assert tried.get("h264_nvenc")
            assert "libx264 opened after h264_nvenc: " in session.choice.reason
    finally:
        session.close()


def test_an_explicit_hardware_encoder_is_refused_with_the_reason() -> None:
    config = EncoderConfig("h264", 320, 240, 30, 500, encoder="h264_nvenc")
    try:
        session = open_encoder(config)
    except EncoderUnavailable as exc:
        assert "h264_nvenc:" in str(exc)
    else:  # a machine with an NVIDIA driver
        assert session.encoder == "h264_nvenc"
        session.close()


def test_candidates_put_hardware_first_by_platform() -> None:
    assert candidates("av1", "linux") == [
        "av1_nvenc",
        "av1_qsv",
        "av1_amf",
        "av1_vaapi",
        "libsvtav1",
    ]
    assert candidates("h264", "darwin") == ["h264_videotoolbox", "libx264"]
    assert candidates("hevc", "win32")[-2:] == ["hevc_mf", "libx265"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"codec": "vp8"}, "unknown codec 'vp8': use one of h264, hevc, av1"),
        ({"width": 321}, "is odd: yuv420p needs even width and height"),
        ({"fps": 0}, "fps must be a whole number from 1 to 480"),
        ({"bitrate_kbps": -5}, "bitrate must be 1 to"),
        ({"bitrate_kbps": 10**9}, "bitrate must be 1 to"),
        ({"width": 8}, "width must be a whole number from 16"),
        ({"gop": 0}, "gop must be a positive number"),
        ({"max_bitrate_kbps": 100}, "must be at least the bitrate"),
    ],
)
def test_bad_configs_say_what_is_allowed(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "codec": "h264",
        "width": 320,
        "height": 240,
        "fps": 30,
        "bitrate_kbps": 500,
    }
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        EncoderConfig(**{**base, **kwargs})  # type: ignore[arg-type]


def test_unknown_or_mismatched_encoders_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unknown encoder 'x999' for h264: use auto, libx264"):
        open_encoder(EncoderConfig("h264", 320, 240, 30, 500, encoder="x999"))
    with pytest.raises(ValueError, match="encodes av1, not h264"):
        open_encoder(EncoderConfig("h264", 320, 240, 30, 500, encoder="libsvtav1"))


def test_close_is_idempotent_and_frees_the_context_at_once() -> None:
    session = open_encoder(EncoderConfig("h264", 320, 240, 30, 500))
    session.encode(frames(1)[0])
    references = sys.getrefcount(session._ctx)
    assert references == 2  # the session's and the call's: nothing else holds the context
    session.close()
    assert session.close() == []
    assert session.closed
    with pytest.raises(SessionClosed):
        session.encode(frames(1)[0])


def test_a_frame_of_another_size_is_converted_not_refused() -> None:
    session = open_encoder(EncoderConfig("h264", 320, 240, 30, 500))
    packets = session.encode(frames(1, 640, 480)[0])
    session.close()
    assert len(packets) == 1


def test_an_encoder_that_fails_marks_the_session_unhealthy() -> None:
    session = open_encoder(EncoderConfig("h264", 320, 240, 30, 500))

    class Broken:
        pix_fmt = "yuv420p"

        def encode(self, frame: object) -> list[object]:
            raise av.error.ValueError(22, "Invalid argument")  # type: ignore[call-arg]

    session._ctx = Broken()
    with pytest.raises(EncoderError):
        session.encode(frames(1)[0])
    assert not session.healthy()
    assert session.close() == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux scheduling")
def test_an_svtav1_session_leaves_no_thread_at_real_time_priority() -> None:
    import os

    def realtime_threads() -> list[int]:
        tasks = [int(t) for t in os.listdir("/proc/self/task")]
        return [t for t in tasks if os.sched_getscheduler(t) in (os.SCHED_FIFO, os.SCHED_RR)]

    # as root, SVT-AV1 makes the opening thread and its workers SCHED_FIFO 99 (not as a
    # normal user, where this holds either way)
    policy = os.sched_getscheduler(0)
    session = open_encoder(EncoderConfig("av1", 320, 240, 30, 500, encoder="libsvtav1"))
    session.encode(frames(1)[0])
    assert os.sched_getscheduler(0) == policy and realtime_threads() == []
    session.close()
    assert realtime_threads() == []


def test_a_session_whose_stream_ended_refuses_frames_instead_of_waiting() -> None:
    # libsvtav1 blocks for ever in svt_av1_enc_get_packet when a frame follows the end of
    # its stream; the session must refuse it first, for every encoder
    config = EncoderConfig("h264", 320, 240, 30, 500, encoder="libx264", low_latency=False)
    session = open_encoder(config)
    try:
        frame = av.VideoFrame.from_ndarray(np.zeros((240, 320, 3), np.uint8), format="rgb24")
        session.encode(frame)
        if session.pending_frames > 0:  # lookahead holds it: drain must end the stream
            session.drain()
            with pytest.raises(EncoderError, match="stream has ended"):
                session.encode(frame)
        else:
            pytest.fail("libx264 with lookahead gave its packet at once: nothing to drain")
    finally:
        session.close()


def test_frames_that_carry_their_own_time_base_get_the_sessions_clock() -> None:
    # aiortc's frames carry pts in 1/90000; PyAV rescales a frame's pts into the codec's time
    # base, so a frame counter read in the frame's own time base came out as pts 0 each time
    session = open_encoder(EncoderConfig("h264", 320, 240, 30, 500, encoder="libx264"))
    pts = []
    for i, frame in enumerate(frames(4)):
        frame.pts, frame.time_base = 3000 * i, Fraction(1, 90000)
        pts += [p.pts for p in session.encode(frame)]
        assert (frame.pts, frame.time_base) == (3000 * i, Fraction(1, 90000))  # put back
    session.close()
    assert pts == [0, 1, 2, 3]
