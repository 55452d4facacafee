"""The reference-frame policy: the DPB inside its budget, in each encoder's options."""

from __future__ import annotations

import pytest

from vramguard.encode import EncoderConfig, open_encoder
from vramguard.pools.references import ReferencePolicy, reference_frame_bytes

MB = 10**6


def test_the_1080p_reference_set_stays_within_50_mb() -> None:
    policy = ReferencePolicy.for_config(
        EncoderConfig("h264", 1920, 1080, 60, 8000), encoder="libx264"
    )
    assert policy.dpb_bytes <= 50 * MB
    assert 1 <= policy.max_references <= 16
    assert policy.frame_bytes == reference_frame_bytes(1920, 1080) == 1984 * 1144 * 3 // 2


def test_a_tight_budget_lowers_references_and_a_hopeless_one_is_refused() -> None:
    config = EncoderConfig("hevc", 3840, 2160, 30, 20000)
    assert ReferencePolicy.for_config(config, budget_bytes=40 * MB).max_references == 2
    with pytest.raises(ValueError, match="cannot hold one 3840x2160 reference frame"):
        ReferencePolicy.for_config(config, budget_bytes=20 * MB)


def test_codec_limits_cap_the_references() -> None:
    config = EncoderConfig("av1", 320, 240, 30, 500)
    policy = ReferencePolicy.for_config(config, budget_bytes=500 * MB, wanted_references=50)
    assert policy.max_references == 8


def test_options_per_encoder_family() -> None:
    policy = ReferencePolicy.for_config(EncoderConfig("h264", 1280, 720, 30, 4000))
    assert policy.encoder_options("libx264") == {
        "refs": "3",
        "bf": "0",
        "rc-lookahead": "0",
        "g": "60",
    }
    assert policy.encoder_options("h264_nvenc")["dpb_size"] == "3"
    assert "pred-struct=1" in policy.encoder_options("libsvtav1")["svtav1-params"]


def test_the_options_open_a_real_encoder_that_obeys_them() -> None:
    config = EncoderConfig("h264", 320, 240, 30, 500)
    policy = ReferencePolicy.for_config(config, budget_bytes=2 * MB, encoder="libx264")
    session = open_encoder(
        EncoderConfig("h264", 320, 240, 30, 500, options=policy.encoder_options())
    )
    from test_encode import frames

    packet = session.encode(frames(1)[0])[0]
    session.close()
    assert f"ref={policy.max_references} ".encode() in bytes(packet)  # x264's own SEI


def test_the_tracker_follows_the_live_set_and_a_keyframe_releases_it() -> None:
    policy = ReferencePolicy.for_config(EncoderConfig("h264", 1920, 1080, 60, 8000))
    tracker = policy.tracker()
    tracker.on_frame(keyframe=True)
    for _ in range(10):
        tracker.on_frame(keyframe=False)
    assert tracker.references == policy.max_references
    assert tracker.reference_bytes == policy.max_references * policy.frame_bytes
    tracker.on_frame(keyframe=True)
    assert tracker.references == 1
    assert tracker.peak_bytes == policy.max_references * policy.frame_bytes
