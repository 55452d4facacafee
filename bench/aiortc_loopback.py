"""Stock aiortc against aiortc with vramguard's encoder, side by side on a live WebRTC session.

    python bench/aiortc_loopback.py --minutes 10 --json bench/aiortc_10m.json

(Not bench/aiortc.py: a script of that name puts itself first on sys.path as `aiortc`, and
every later `import aiortc` in that process, or in one that adds bench/ to its path, would
get this file.)

Each schedule runs the two variants at once, each in a process of its own, so that both
meet the same load on a shared machine and each has its own RSS: two RTCPeerConnections in
the process over the host's own addresses, 1280x720 at 30 fps of moving pictures (a
drifting texture with grain, detailed enough to fill the target), H.264 one way, decoded on
the receiving side.

- `remb`: the rate follows the receiver's REMB estimates, as aiortc does;
- `random`: the rate is set at random between 0.5 and 3 Mbps every 5 s (the same seeded
  sequence for both), as congestion would; REMB is ignored.

Measured per variant: encoder contexts opened (and per minute), real rate changes (the
target moved), keyframes (IDR frames seen in the payloads) and those the receiver asked
for, RSS at minute 2 (or a fifth of a shorter run) and at the end and the growth fitted
between them, rate tracking (bits sent per second against the target, on seconds whose
target held within 10% for the two seconds before), frames sent, encoded and received, and
process CPU per frame (the whole process: the sender and the receiver; both variants carry
the same receiver). Prints the table bench/results.py renders into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

BENCH = Path(__file__).resolve().parent
# this folder goes last: `results` is found, and the real aiortc stays ahead of any copy
sys.path.append(str(BENCH))

from aiortc.codecs.h264 import H264Encoder, h264_depayload  # noqa: E402
from aiortc.mediastreams import VIDEO_TIME_BASE  # noqa: E402

import results as render  # noqa: E402  bench/results.py: the one renderer of these tables
from vramguard.integrations.aiortc import (  # noqa: E402
    EncoderLedger,
    H264Settings,
    VramguardH264Encoder,
    use,
)
from vramguard.integrations.aiortc.loopback import Loopback  # noqa: E402

WIDTH, HEIGHT, FPS = 1280, 720, 30
VARIANTS = ("stock", "vramguard")
SCHEDULES = ("remb", "random")
RANDOM_EVERY_S = 5.0
RANDOM_RANGE_BPS = (500_000, 3_000_000)
SAMPLE_EVERY_S = 1.0


class TexturedSource:
    """Moving pictures with detail enough to fill 3 Mbps at 720p: a fixed random texture
    (smoothed) that drifts, plus grain from a bank of eight noise planes, so that neither
    motion search nor a reference frame predicts it away. vramguard's synthetic source
    (sliding stripes) is too plain: both encoders sent half their target with it."""

    def __init__(self, width: int, height: int) -> None:
        rng = np.random.default_rng(720)
        rows = height * 3 // 2
        texture = rng.integers(0, 256, (rows + 65, width + 65), dtype=np.uint16)
        texture = (texture + np.roll(texture, 1, 0) + np.roll(texture, 1, 1)
                   + np.roll(texture, 1, (0, 1))) // 4  # fmt: skip
        self._texture = texture.astype(np.uint8)
        self._grain = [rng.integers(0, 8, (rows, width), dtype=np.uint8) for _ in range(8)]
        self._rows, self._width = rows, width

    def draw(self, target: np.ndarray[Any, np.dtype[np.uint8]], index: int) -> None:
        # back and forth, never a jump: a window that wrapped around would be a scene cut
        # every 32 frames, and x264's scene-cut detection would start a keyframe at each
        x, y = _bounce(2 * index, 64), _bounce(index, 64)
        window = self._texture[y : y + self._rows, x : x + self._width]
        np.add(window, self._grain[index % 8], out=target)


def _bounce(step: int, span: int) -> int:
    """0, 1, ..., span, span - 1, ..., 0, 1, ...: a position that turns back at the ends."""
    phase = step % (2 * span)
    return phase if phase <= span else 2 * span - phase


def idr_in(payloads: list[bytes]) -> bool:
    """Whether a frame's RTP payloads carry an IDR slice (NAL type 5)."""
    for payload in payloads:
        data = h264_depayload(payload)
        start = 0
        while (start := data.find(b"\x00\x00\x00\x01", start)) != -1:
            if start + 4 < len(data) and data[start + 4] & 0x1F == 5:
                return True
            start += 4
    return False


@dataclass
class Meter:
    """What one encoder did, counted the same way for both variants."""

    scheduled: bool  # the random schedule sets the rate; REMB is then ignored
    rate_changes: int = 0
    keyframes: int = 0
    keyframes_asked: int = 0
    frames: int = 0
    bytes_sent: int = 0
    #: second -> [bytes, target bps, frames]
    per_second: dict[int, list[float]] = field(default_factory=dict)
    targets: list[tuple[float, int]] = field(default_factory=list)  # (t, bps) at each change
    started: float = field(default_factory=time.monotonic)

    def frame(self, payloads: list[bytes], target_bps: int, asked: bool) -> None:
        size = sum(len(p) for p in payloads)
        self.frames += 1
        self.bytes_sent += size
        self.keyframes += idr_in(payloads)
        self.keyframes_asked += asked
        second = int(time.monotonic() - self.started)
        bucket = self.per_second.setdefault(second, [0.0, float(target_bps), 0.0])
        bucket[0] += size
        bucket[2] += 1

    def target_moved(self, bps: int) -> None:
        self.rate_changes += 1
        self.targets.append((time.monotonic() - self.started, bps))


class Metered:
    """Counts an encoder's frames, keyframes and rate changes into a meter; under the random
    schedule the rate is the schedule's, and what aiortc sets from REMB is ignored."""

    meter: Meter

    @property
    def target_bitrate(self) -> int:
        return super().target_bitrate  # type: ignore[misc,no-any-return]

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        if not self.meter.scheduled:
            self.schedule(bitrate)

    def schedule(self, bitrate: int) -> None:
        before = self.target_bitrate
        super(Metered, type(self)).target_bitrate.fset(self, bitrate)  # type: ignore[attr-defined]
        if self.target_bitrate != before:
            self.meter.target_moved(self.target_bitrate)

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        payloads, timestamp = super().encode(frame, force_keyframe)  # type: ignore[misc]
        self.meter.frame(payloads, self.target_bitrate, force_keyframe)
        return payloads, timestamp  # type: ignore[no-any-return]


class MeteredStock(Metered, H264Encoder):
    """aiortc's own encoder: its contexts are the libx264 contexts it opens."""

    def __init__(self, meter: Meter) -> None:
        super().__init__()
        self.meter = meter
        self.contexts = 0

    def _encode_frame(self, frame: Any, force_keyframe: bool) -> Any:
        before = self.codec
        nals = list(super()._encode_frame(frame, force_keyframe))
        if self.codec is not before:
            self.contexts += 1
        yield from nals


class MeteredVramguard(Metered, VramguardH264Encoder):
    """vramguard's encoder: its contexts are the sessions it opens."""

    def __init__(self, meter: Meter, ledger: EncoderLedger) -> None:
        super().__init__(H264Settings(), ledger)
        self.meter = meter

    @property
    def contexts(self) -> int:
        return self.counters.sessions_opened


def rate_tracking(meter: Meter) -> dict[str, Any]:
    """Bits sent against the target, on settled seconds (the target of the second and of
    the two before it within 10% of each other; the last second is cut short): per second
    of wall time (what the network sees), and per frame against the target's share of a
    frame at 30 fps (the encoder's own accuracy, whatever rate the frames came at: on a
    loaded machine they come slower than 30 a second, and every encoder then sends less a
    second than its target)."""
    seconds = sorted(meter.per_second)[:-1]
    per_second, per_frame = [], []
    for s in seconds:
        window = [meter.per_second[k][1] for k in (s - 2, s - 1, s) if k in meter.per_second]
        if len(window) < 3 or max(window) > 1.1 * min(window):
            continue
        sent, target, frames = meter.per_second[s]
        per_second.append(sent * 8 / target)
        per_frame.append(sent * 8 / (frames * target / FPS))

    def median(ratios: list[float]) -> float | None:
        return float(np.median(ratios)) if ratios else None

    def within(ratios: list[float]) -> float | None:
        return sum(abs(r - 1) <= 0.1 for r in ratios) / len(ratios) if ratios else None

    buckets = [meter.per_second[s] for s in seconds]
    sent_bits = sum(b[0] * 8 for b in buckets)
    return {
        "settled_seconds": len(per_second),
        "median_ratio": median(per_second),
        "within_10pct_share": within(per_second),
        "sent_over_target": sent_bits / sum(b[1] for b in buckets) if buckets else None,
        "per_frame_median_ratio": median(per_frame),
        "per_frame_within_10pct_share": within(per_frame),
        "per_frame_sent_over_target": (
            sent_bits / sum(b[2] * b[1] / FPS for b in buckets) if buckets else None
        ),
        "frames_per_second": sum(b[2] for b in buckets) / len(buckets) if buckets else None,
    }


def fitted_growth(series: list[tuple[float, int]], from_t: float) -> float | None:
    """Least-squares slope of RSS over [from_t, end], in bytes per hour."""
    points = [(t, v) for t, v in series if t >= from_t]
    if len(points) < 3:
        return None
    t, v = np.array(points, dtype=float).T
    return float(np.polyfit(t, v, 1)[0] * 3600)


def rss_at(series: list[tuple[float, int]], t: float) -> int | None:
    return next((v for s, v in series if s >= t), None)


async def run_variant(variant: str, schedule: str, seconds: float, seed: int) -> dict[str, Any]:
    meter = Meter(scheduled=schedule == "random")
    ledger = EncoderLedger()
    made: list[MeteredStock | MeteredVramguard] = []

    def factory(codec: Any) -> Any:
        if codec.mimeType.lower() != "video/h264":
            return None
        encoder = MeteredStock(meter) if variant == "stock" else MeteredVramguard(meter, ledger)
        made.append(encoder)
        return encoder

    process = psutil.Process()
    cpu0 = sum(process.cpu_times()[:2])
    rss: list[tuple[float, int]] = []
    rng = random.Random(seed)
    loopback = await Loopback.open(
        WIDTH, HEIGHT, lambda pc: use(pc, factory=factory), source=TexturedSource
    )
    start = time.monotonic()
    next_rate, next_report = 0.0, 60.0
    try:
        while (now := time.monotonic() - start) < seconds:
            rss.append((now, process.memory_info().rss))
            if meter.scheduled and now >= next_rate and made:
                made[0].schedule(rng.randint(*RANDOM_RANGE_BPS))
                next_rate += RANDOM_EVERY_S
            if now >= next_report:
                contexts = sum(e.contexts for e in made)
                print(f"[{schedule} {variant}] minute {now / 60:.0f}: {meter.frames} frames, "
                      f"{contexts} contexts, RSS {rss[-1][1] / 1e6:.0f} MB",
                      file=sys.stderr, flush=True)  # fmt: skip
                next_report += 60.0
            await asyncio.sleep(SAMPLE_EVERY_S)
    finally:
        frames_sent = loopback.track.frames_sent
        received = loopback.received.frames
        contexts = sum(e.contexts for e in made)
        await loopback.close()
    duration = time.monotonic() - start
    cpu = sum(process.cpu_times()[:2]) - cpu0
    from_t = min(120.0, duration / 5)
    return {
        "variant": variant,
        "schedule": schedule,
        "duration_s": duration,
        "contexts_opened": contexts,
        "contexts_per_minute": contexts / (duration / 60),
        "rate_changes": meter.rate_changes,
        "keyframes": meter.keyframes,
        "keyframes_asked": meter.keyframes_asked,
        "rss_from_t": from_t,
        "rss_start_bytes": rss[0][1],
        "rss_from_bytes": rss_at(rss, from_t),
        "rss_end_bytes": rss[-1][1],
        "rss_growth_bytes_per_hour": fitted_growth(rss, from_t),
        "rss_series": rss[:: max(1, len(rss) // 200)],
        "rate": rate_tracking(meter),
        "bytes_sent": meter.bytes_sent,
        "frames_sent": frames_sent,
        "frames_encoded": meter.frames,
        "frames_received": received,
        "cpu_s": cpu,
        "cpu_per_frame_ms": cpu / max(1, meter.frames) * 1000,
        "ledger": ledger.stats().as_dict() if variant == "vramguard" else None,
    }


def run_schedule(schedule: str, minutes: float, seed: int) -> dict[str, Any]:
    """Both variants at once, a process each; their results."""
    children = {}
    outputs = {}
    for variant in VARIANTS:
        out = BENCH / f".aiortc_{schedule}_{variant}_{os.getpid()}.json"
        outputs[variant] = out
        children[variant] = subprocess.Popen([
            sys.executable, __file__, "--child", variant, "--schedule", schedule,
            "--minutes", str(minutes), "--seed", str(seed), "--json", str(out),
        ])  # fmt: skip
    runs = {}
    try:
        for variant, child in children.items():
            if child.wait() != 0:
                code = child.returncode
                raise SystemExit(f"the {variant} run of {schedule} failed (exit {code})")
            runs[variant] = json.loads(outputs[variant].read_text(encoding="utf-8"))
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
                child.wait()
        for out in outputs.values():
            out.unlink(missing_ok=True)
    return runs


def encode_cost(rounds: int, frames: int, seed: int) -> dict[str, Any]:
    """CPU per frame of the encoders alone, no network, no receiver: the same 720p frames
    through each in turn, round after round, the rate changed every 5 s of frames by the
    random schedule (so aiortc's own opens its new contexts as in a session). Process CPU
    (x264's threads included) is summed over the `encode` calls only."""
    import av  # here: the loopback does not need it at the top

    source = TexturedSource(WIDTH, HEIGHT)
    buffer = np.empty((HEIGHT * 3 // 2, WIDTH), np.uint8)
    cost: dict[str, list[float]] = {v: [] for v in VARIANTS}
    contexts: dict[str, list[int]] = {v: [] for v in VARIANTS}
    for _ in range(rounds):
        for variant in VARIANTS:
            meter, rng = Meter(scheduled=True), random.Random(seed)
            encoder: MeteredStock | MeteredVramguard = (
                MeteredStock(meter)
                if variant == "stock"
                else MeteredVramguard(meter, EncoderLedger())
            )
            spent = 0.0
            for i in range(frames):
                if i % int(RANDOM_EVERY_S * FPS) == 0:
                    encoder.schedule(rng.randint(*RANDOM_RANGE_BPS))
                source.draw(buffer, i)
                frame = av.VideoFrame.from_ndarray(buffer, format="yuv420p")
                frame.pts, frame.time_base = i * 3000, VIDEO_TIME_BASE
                before = time.process_time()  # every thread of the process, ns resolution
                encoder.encode(frame)
                spent += time.process_time() - before
            contexts[variant].append(encoder.contexts)
            if isinstance(encoder, MeteredVramguard):
                encoder.close()
            cost[variant].append(spent / frames * 1000)
    ratios = [b / a for a, b in zip(cost["stock"], cost["vramguard"], strict=True)]
    return {
        "rounds": rounds,
        "frames": frames,
        "cpu_per_frame_ms": cost,
        "contexts_opened": contexts,
        "median_ratio": float(np.median(ratios)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="stream time per run")
    parser.add_argument("--schedule", choices=(*SCHEDULES, "both"), default="both")
    parser.add_argument("--seed", type=int, default=14, help="the random schedule's seed")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--encode-only",
        action="store_true",
        help="CPU per frame of the encoders alone (no session), and stop",
    )
    parser.add_argument("--rounds", type=int, default=3, help="--encode-only: rounds")
    parser.add_argument("--frames", type=int, default=300, help="--encode-only: frames a round")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    command = ("python bench/aiortc_loopback.py " + " ".join(sys.argv[1:])).strip()
    if args.encode_only:
        if args.rounds < 1 or args.frames < 1:
            print("bench/aiortc_loopback.py: --rounds and --frames must be 1 or more",
                  file=sys.stderr)  # fmt: skip
            return 2
        data = {"command": command, "resolution": f"{WIDTH}x{HEIGHT}", "cpus": os.cpu_count(),
                "load_average_at_start": os.getloadavg(),
                "encode_only": encode_cost(args.rounds, args.frames, args.seed),
                "load_average_at_end": os.getloadavg()}  # fmt: skip
        print(render.aiortc_encode_table(data))
        if args.json:
            args.json.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        return 0
    if not 0 < args.minutes <= 24 * 60:
        print(f"bench/aiortc_loopback.py: --minutes must be above 0, not {args.minutes}",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.child:
        result = asyncio.run(run_variant(args.child, args.schedule, args.minutes * 60, args.seed))
        args.json.write_text(json.dumps(result), encoding="utf-8")
        return 0
    schedules = SCHEDULES if args.schedule == "both" else (args.schedule,)
    data = {
        "command": command,
        "minutes": args.minutes,
        "resolution": f"{WIDTH}x{HEIGHT}",
        "fps": FPS,
        "seed": args.seed,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "schedules": {s: run_schedule(s, args.minutes, args.seed) for s in schedules},
    }
    data["load_average_at_end"] = os.getloadavg()
    print(render.aiortc_table(data))
    if args.json:
        args.json.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
