"""A reference-frame policy that keeps the decoded picture buffer inside a memory budget.

An encoder keeps reconstructed frames to predict from: up to 16 for H.264 and HEVC, 8 slots
for AV1, plus any frames held for B-frames and lookahead. At 1080p each costs ~3.4 MB, so an
unbounded DPB is the plan's "100-150 MB of reference frames". `ReferencePolicy.for_config`
picks references, B-frames, lookahead and GOP so that the set stays within the budget (50 MB
by default), maps them to each encoder family's options, and `ReferenceTracker` follows the
live set frame by frame (a keyframe releases the others) to report `reference_bytes`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from vramguard.encode.backends import family_of
from vramguard.encode.config import EncoderConfig

MB = 10**6
DEFAULT_BUDGET_BYTES = 50 * MB
#: most reference frames the codec allows
CODEC_MAX_REFERENCES = {"h264": 16, "hevc": 16, "av1": 8}
#: encoders pad reconstructed frames for motion search beyond the edges (x264: 32 px)
PADDING_PX = 32
_BYTES_PER_PIXEL = {"yuv420p": 1.5, "nv12": 1.5, "yuv420p10le": 3.0, "p010le": 3.0, "yuv444p": 3.0}


def reference_frame_bytes(width: int, height: int, pix_fmt: str = "yuv420p") -> int:
    """Bytes one reconstructed reference frame takes, padding included."""
    padded = (width + 2 * PADDING_PX) * (height + 2 * PADDING_PX)
    return int(padded * _BYTES_PER_PIXEL.get(pix_fmt, 1.5))


@dataclass(frozen=True, slots=True)
class ReferencePolicy:
    """References, B-frames, lookahead and GOP for one config, within a budget."""

    codec: str
    encoder: str
    max_references: int
    b_frames: int
    lookahead: int
    gop: int
    frame_bytes: int
    budget_bytes: int

    @classmethod
    def for_config(
        cls,
        config: EncoderConfig,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        wanted_references: int = 3,
        encoder: str | None = None,
    ) -> ReferencePolicy:
        """The policy for `config` (and `encoder`, when "auto" resolved to one)."""
        frame = reference_frame_bytes(config.width, config.height, config.pix_fmt)
        b_frames = 0 if config.low_latency else 2
        lookahead = 0 if config.low_latency else 10
        # the frame being encoded and the frames held back for B-frames also live in the DPB
        affordable = budget_bytes // frame - 1 - b_frames
        if affordable < 1:
            raise ValueError(
                f"a reference budget of {budget_bytes / MB:.1f} MB cannot hold one "
                f"{config.width}x{config.height} reference frame ({frame / MB:.1f} MB) "
                f"besides the frame being encoded"
            )
        refs = max(1, min(wanted_references, affordable, CODEC_MAX_REFERENCES[config.codec]))
        name = encoder or (config.encoder if config.encoder != "auto" else "")
        return cls(
            codec=config.codec, encoder=name, max_references=refs, b_frames=b_frames,
            lookahead=lookahead, gop=config.gop_frames, frame_bytes=frame,
            budget_bytes=budget_bytes,
        )  # fmt: skip

    @property
    def dpb_bytes(self) -> int:
        """The most the reference set can hold under this policy, in bytes."""
        return (self.max_references + 1 + self.b_frames) * self.frame_bytes

    def encoder_options(self, encoder: str | None = None) -> dict[str, str]:
        """The policy as FFmpeg options for an encoder family."""
        name = encoder or self.encoder
        family = family_of(name).name if name else ""
        refs, bf, la, gop = self.max_references, self.b_frames, self.lookahead, self.gop
        if family == "x264":
            return {"refs": str(refs), "bf": str(bf), "rc-lookahead": str(la), "g": str(gop)}
        if family == "x265":
            return {"x265-params": f"log-level=error:ref={refs}:bframes={bf}:rc-lookahead={la}"
                    f":keyint={gop}"}  # fmt: skip
        if family == "svtav1":
            structure = "pred-struct=1:" if bf == 0 else ""
            return {"svtav1-params": f"{structure}rc=2:keyint={gop}"}
        if family == "nvenc":
            return {"dpb_size": str(refs), "bf": str(bf), "rc-lookahead": str(la), "g": str(gop)}
        return {"refs": str(refs), "bf": str(bf), "g": str(gop)}

    def tracker(self) -> ReferenceTracker:
        return ReferenceTracker(self)


class ReferenceTracker:
    """The live reference set, frame by frame: a keyframe releases every other reference,
    and at most `max_references` stay (the oldest leaves first)."""

    def __init__(self, policy: ReferencePolicy) -> None:
        self.policy = policy
        self._frames: deque[int] = deque()
        self.peak_bytes = 0
        self.frames_seen = 0

    def on_frame(self, keyframe: bool) -> None:
        """Account for one encoded frame (every frame is a reference in low-latency mode)."""
        if keyframe:
            self._frames.clear()
        self._frames.append(self.frames_seen)
        while len(self._frames) > self.policy.max_references:
            self._frames.popleft()
        self.frames_seen += 1
        self.peak_bytes = max(self.peak_bytes, self.reference_bytes)

    def reset(self) -> None:
        """A new client on a reused session starts from a keyframe: nothing is referenced."""
        self._frames.clear()

    @property
    def references(self) -> int:
        return len(self._frames)

    @property
    def reference_bytes(self) -> int:
        return len(self._frames) * self.policy.frame_bytes
