"""Changing bitrate in place: what each software encoder does, what a warm session costs,
and how a libx264 session changed in place compares with a fresh one at each rate.

1. Each software encoder asked to go 2400 -> 600 kbps in place at 640x360 (ceiling 3000):
   what `set_bitrate` said and the rate measured before and after.
2. The memory of a warm session per codec and size (what `SessionPool(max_idle_bytes=)`
   counts, `vramguard.encode.costs`): RSS after opening N sessions with the soak's settings
   (reference policy, ceiling 8000 kbps), each given a few frames, heap trimmed, minus RSS
   before, over N; each codec and size in its own process.
3. H.264 through a ladder (default 5000/8000/2000/3500 kbps, 30 s each, testsrc2, 1080p):
   one session changed in place against a fresh session per rung on the same frames: the
   rate per rung against the asked rate, luma PSNR (every 10th frame) and keyframes.

    python bench/adapt.py --json bench/adapt.json

Prints tables and writes JSON. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

import av
import numpy as np

from vramguard import read, trim_heap
from vramguard.encode import EncoderConfig, open_encoder
from vramguard.pools.references import ReferencePolicy
from vramguard.sources import make_source
from vramguard.units import parse_resolution

MB = 1e6
SIZES = ("640x360", "1280x720", "1920x1080")
CODECS = ("h264", "hevc", "av1")
CEILING_KBPS = 8000


def soak_config(codec: str, width: int, height: int, fps: int, kbps: int) -> EncoderConfig:
    """A session as the managed soak opens it: its reference policy, ceiling 8000 kbps."""
    base = EncoderConfig(codec, width, height, fps, kbps, max_bitrate_kbps=CEILING_KBPS)
    probe = open_encoder(base)
    encoder = probe.encoder
    probe.close()
    policy = ReferencePolicy.for_config(base, encoder=encoder)
    return EncoderConfig(codec, width, height, fps, kbps, encoder=encoder,
                         max_bitrate_kbps=CEILING_KBPS,
                         options=policy.encoder_options())  # fmt: skip


def rss() -> int:
    value = read().host_rss_bytes
    assert value is not None, "this bench needs the process RSS"
    return value


def warm_cost(codec: str, resolution: str, sessions: int) -> dict[str, Any]:
    """Per-session RSS of `sessions` warm sessions (run in a process of its own)."""
    width, height = parse_resolution(resolution)
    config = soak_config(codec, width, height, 30, 5000)
    source = make_source("synthetic", width, height, 30)
    image = np.empty((height * 3 // 2, width), np.uint8)
    frame = av.VideoFrame.from_numpy_buffer(image, format="yuv420p")
    warmup = open_encoder(config)  # the encoder's one-time costs (code pages, tables)
    for i in range(8):
        source.draw(image, i)
        warmup.encode(frame)
    warmup.close()
    trim_heap()
    before = rss()
    held = []
    for _ in range(sessions):
        session = open_encoder(config)
        for i in range(8):
            source.draw(image, i)
            session.encode(frame)
        held.append(session)
    trim_heap()
    after = rss()
    for session in held:
        session.close()
    source.close()
    return {"codec": codec, "resolution": resolution, "encoder": config.encoder,
            "sessions": sessions, "per_session_bytes": (after - before) // sessions}  # fmt: skip


def in_place_check(codec: str) -> dict[str, Any]:
    """2400 -> 600 kbps asked in place at 640x360: what set_bitrate says, what comes out."""
    width, height, fps = 640, 360, 30
    config = EncoderConfig(codec, width, height, fps, 2400, max_bitrate_kbps=3000)
    session = open_encoder(config)
    source = make_source("testsrc2", width, height, fps)
    image = np.empty((height * 3 // 2, width), np.uint8)
    frame = av.VideoFrame.from_numpy_buffer(image, format="yuv420p")
    noise = np.random.default_rng(1).integers(0, 48, (5, *image.shape)).astype(np.uint8)

    def kbps(start: int, n: int = 4 * fps) -> float:
        size = 0
        for i in range(start, start + n):
            source.draw(image, i)
            np.add(image, noise[i % 5], out=image)  # testsrc2 alone is too easy for 2400 kbps
            size += sum(p.size for p in session.encode(frame))
        return size * 8 / (n / fps) / 1000

    before = kbps(0)
    changed = session.set_bitrate(600)
    after = kbps(4 * fps)
    name = session.encoder
    session.close()
    source.close()
    return {"codec": codec, "encoder": name, "set_bitrate": changed,
            "kbps_before": before, "kbps_after": after}  # fmt: skip


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = float(np.mean((a.astype(np.int16) - b.astype(np.int16)) ** 2))
    return 10 * float(np.log10(255**2 / max(error, 1e-9)))


class Rung:
    """One rung's figures: bytes, frames, PSNR samples, keyframes."""

    def __init__(self, kbps: int) -> None:
        self.kbps = kbps
        self.bytes = 0
        self.frames = 0
        self.psnr: list[float] = []
        self.keyframes = 0


def encode_rung(session: Any, source: Any, first: int, frames: int, rung: Rung) -> None:
    """Encode frames [first, first + frames) into `rung`, decoding every packet and
    comparing the luma of every 10th frame with what went in."""
    width, height = session.config.width, session.config.height
    image = np.empty((height * 3 // 2, width), np.uint8)
    frame = av.VideoFrame.from_numpy_buffer(image, format="yuv420p")
    decoder = session_decoder(session)
    expected: dict[int, np.ndarray] = {}
    for index in range(first, first + frames):
        source.draw(image, index)
        if (index - first) % 10 == 5:
            expected[index] = image[:height].copy()
        for packet in session.encode(frame):
            rung.bytes += packet.size
            rung.keyframes += bool(packet.is_keyframe)
            for decoded in decoder.decode(packet):
                want = expected.pop(rung.frames + first, None)
                if want is not None:
                    rung.psnr.append(psnr(decoded.to_ndarray()[:height], want))
                rung.frames += 1


_DECODERS: dict[int, Any] = {}


def session_decoder(session: Any) -> Any:
    """One H.264 decoder per session, kept across rungs (a session's stream is one stream)."""
    key = id(session)
    if key not in _DECODERS:
        _DECODERS[key] = av.CodecContext.create("h264", "r")
    return _DECODERS[key]


def ladder_quality(resolution: str, fps: int, ladder: list[int], rung_s: float) -> dict[str, Any]:
    """H.264: one session changed in place through the ladder against a fresh session per
    rung at its rate, on the same frames of testsrc2."""
    width, height = parse_resolution(resolution)
    n = round(rung_s * fps)
    source = make_source("testsrc2", width, height, fps)
    session = open_encoder(soak_config("h264", width, height, fps, ladder[0]))
    in_place: list[Rung] = []
    for r, kbps in enumerate(ladder):
        assert session.set_bitrate(kbps), "libx264 opened at its ceiling changes rate in place"
        rung = Rung(kbps)
        encode_rung(session, source, r * n, n, rung)
        in_place.append(rung)
    stats = session.stats
    session.close()
    fresh: list[Rung] = []
    for r, kbps in enumerate(ladder):
        config = soak_config("h264", width, height, fps, kbps)
        single = open_encoder(EncoderConfig("h264", width, height, fps, kbps,
                                            encoder="libx264", options=config.options))  # fmt: skip
        rung = Rung(kbps)
        encode_rung(single, source, r * n, n, rung)
        single.close()
        fresh.append(rung)
    source.close()
    rows = []
    for mine, theirs in zip(in_place, fresh, strict=True):
        kbps_mine = mine.bytes * 8 / (mine.frames / fps) / 1000
        kbps_fresh = theirs.bytes * 8 / (theirs.frames / fps) / 1000
        rows.append({
            "asked_kbps": mine.kbps,
            "in_place_kbps": kbps_mine,
            "fresh_kbps": kbps_fresh,
            "in_place_error": kbps_mine / mine.kbps - 1,
            "fresh_error": kbps_fresh / theirs.kbps - 1,
            "in_place_psnr_db": float(np.mean(mine.psnr)),
            "fresh_psnr_db": float(np.mean(theirs.psnr)),
            "psnr_delta_db": float(np.mean(mine.psnr) - np.mean(theirs.psnr)),
            "in_place_keyframes": mine.keyframes,
            "fresh_keyframes": theirs.keyframes,
        })  # fmt: skip
    return {
        "resolution": resolution,
        "fps": fps,
        "rung_s": rung_s,
        "ladder_kbps": ladder,
        "source": "testsrc2",
        "rungs": rows,
        "keyframes_after_rate_change": stats.keyframes_after_rate_change,
        "bitrate_changes": stats.bitrate_changes,
    }


def child(kind: str, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", kind, *args],
                          capture_output=True, text=True, check=True)  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def print_quality(quality: dict[str, Any]) -> None:
    print(f"\n## H.264 {quality['resolution']} in place against fresh, {quality['rung_s']:.0f} s "
          f"a rung, {quality['source']}\n")  # fmt: skip
    print("| asked | in place | error | fresh | error | PSNR in place | PSNR fresh | delta "
          "| keyframes in place / fresh |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in quality["rungs"]:
        print(f"| {r['asked_kbps']} | {r['in_place_kbps']:.0f} | {r['in_place_error']:+.1%} | "
              f"{r['fresh_kbps']:.0f} | {r['fresh_error']:+.1%} | {r['in_place_psnr_db']:.2f} | "
              f"{r['fresh_psnr_db']:.2f} | {r['psnr_delta_db']:+.2f} dB | "
              f"{r['in_place_keyframes']} / {r['fresh_keyframes']} |")  # fmt: skip
    print(
        f"\nKeyframes caused by the {quality['bitrate_changes']} rate changes: "
        f"{quality['keyframes_after_rate_change']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", default=None)
    parser.add_argument("--sessions", type=int, default=3, help="warm sessions per cost run")
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--resolution", default="1920x1080", help="of the H.264 ladder")
    parser.add_argument("--ladder", default="5000,8000,2000,3500")
    parser.add_argument("--rung", type=float, default=30.0, help="seconds of stream a rung")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--skip", default="", help="comma list of: check,costs,quality")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "cost":
            print(json.dumps(warm_cost(rest[0], rest[1], int(rest[2]))))
        else:
            print(json.dumps(in_place_check(rest[0])))
        return
    skip = set(args.skip.split(",")) - {""}
    out: dict[str, Any] = {}
    if "check" not in skip:
        out["in_place"] = [child("check", codec) for codec in CODECS]
        print("## A bitrate change in place, 2400 -> 600 kbps at 640x360\n")
        print("| codec | encoder | set_bitrate | kbps before | kbps after |")
        print("|---|---|---|---|---|")
        for r in out["in_place"]:
            print(f"| {r['codec']} | {r['encoder']} | {r['set_bitrate']} | "
                  f"{r['kbps_before']:.0f} | {r['kbps_after']:.0f} |")  # fmt: skip
    if "costs" not in skip:
        out["warm_session"] = [child("cost", codec, size, str(args.sessions))
                               for codec in CODECS for size in args.sizes.split(",")]  # fmt: skip
        print(f"\n## A warm session's memory ({args.sessions} held, heap trimmed)\n")
        print("| codec | encoder | size | per session |")
        print("|---|---|---|---|")
        for r in out["warm_session"]:
            print(f"| {r['codec']} | {r['encoder']} | {r['resolution']} | "
                  f"{r['per_session_bytes'] / MB:.1f} MB |")  # fmt: skip
    if "quality" not in skip:
        ladder = [int(k) for k in args.ladder.split(",")]
        out["h264_ladder"] = ladder_quality(args.resolution, args.fps, ladder, args.rung)
        print_quality(out["h264_ladder"])
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(out, handle, indent=1)


if __name__ == "__main__":
    main()
