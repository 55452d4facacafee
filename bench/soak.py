"""The soak, side by side: its speed against a bare PyAV loop and the ffmpeg command line,
and the managed pipeline against the baseline (the unmanaged way) per codec.

1. Frames per second at 1080p H.264 (libx264 ultrafast, zerolatency, CBR 5000 kbps, GOP 2 s,
   no B-frames, 3 references): `vramguard soak`'s loop (staging pool, session pool,
   reference policy, sampler; with and without drawing ahead), a bare PyAV encode loop with
   the same source and settings, each on the synthetic source and on FFmpeg's testsrc2, and
   `ffmpeg -f lavfi -i testsrc2 ... -f null -` with the same encoder settings; interleaved
   rounds, ratios per round.
2. Managed against `--baseline` over `--stream` of stream time with a bitrate change every
   30 s (2000/3500/5000/8000 kbps) and a reconnect every 2 minutes: peak RSS, growth per
   hour, session reuse, sessions created, frames dropped for memory.

    python bench/soak.py --stream 5m --json bench/soak.json

Each run is its own process. Prints a table and writes JSON. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from typing import Any

import av
import numpy as np

from vramguard.encode import EncoderConfig, open_encoder
from vramguard.pools.references import ReferencePolicy
from vramguard.sources import make_source
from vramguard.units import parse_duration

MB = 1e6
LADDER = "2000,3500,5000,8000"


def soak(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "vramguard", "soak", *args, "--json"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def bare_loop(frames: int, width: int, height: int, fps: int, source_name: str) -> float:
    """fps of a plain PyAV loop: one reused frame, the same source, the same options."""
    config = EncoderConfig("h264", width, height, fps, 5000, encoder="libx264")
    policy = ReferencePolicy.for_config(config, encoder="libx264")
    session = open_encoder(EncoderConfig("h264", width, height, fps, 5000, encoder="libx264",
                                         options=policy.encoder_options()))  # fmt: skip
    source = make_source(source_name, width, height, fps)
    image = np.empty((height * 3 // 2, width), np.uint8)
    frame = av.VideoFrame.from_numpy_buffer(image, format="yuv420p")
    began = time.perf_counter()
    for i in range(frames):
        source.draw(image, i)
        session.encode(frame)
    seconds = time.perf_counter() - began
    session.close()
    source.close()
    return frames / seconds


def ffmpeg_cli(frames: int, width: int, height: int, fps: int) -> float | None:
    if shutil.which("ffmpeg") is None:
        return None
    command = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
        f"testsrc2=size={width}x{height}:rate={fps}", "-frames:v", str(frames), "-pix_fmt",
        "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
        "-b:v", "5000k", "-maxrate", "5000k", "-bufsize", "5000k", "-g", str(2 * fps),
        "-bf", "0", "-refs", "3", "-f", "null", "-",
    ]  # fmt: skip
    began = time.perf_counter()
    subprocess.run(command, check=True)
    return frames / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=1800, help="frames for the fps runs")
    parser.add_argument("--stream", default="5m", help="stream time of each managed/baseline run")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--codecs", default="h264:1920x1080,av1:1920x1080,hevc:1280x720")
    parser.add_argument("--json", default=None)
    parser.add_argument("--speed-only", action="store_true", help="only the fps comparison")
    parser.add_argument("--rounds", type=int, default=3, help="speed rounds (median is shown)")
    parser.add_argument("--no-speed", action="store_true", help="only the managed/baseline runs")
    parser.add_argument("--managed-only", action="store_true", help="no baseline runs")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an encoder option for the managed runs (e.g. svtav1-params=...)",
    )
    args = parser.parse_args()
    w, h = 1920, 1080
    seconds = args.frames / 60
    rounds: dict[str, list[float]] = {}
    for _ in range(0 if args.no_speed else args.rounds):  # interleaved: the machine is noisy
        for source in ("synthetic", "testsrc2"):
            for loop, extra in (("soak_prefetch", ("--prefetch",)),
                                ("soak_no_prefetch", ("--no-prefetch",))):  # fmt: skip
                run = soak("--codec", "h264", "--encoder", "libx264", "--resolution",
                           f"{w}x{h}", "--fps", "60", "--duration", f"{seconds}s", "--bitrate",
                           "5000", "--source", source, *extra)  # fmt: skip
                rounds.setdefault(f"{loop} {source}", []).append(run["fps"])
            bare = bare_loop(args.frames, w, h, 60, source)
            rounds.setdefault(f"bare_pyav {source}", []).append(bare)
        cli = ffmpeg_cli(args.frames, w, h, 60)
        if cli is not None:
            rounds.setdefault("ffmpeg_cli testsrc2", []).append(cli)
    speed = {name: float(np.median(values)) for name, values in rounds.items()}
    runs = []
    stream_s = parse_duration(args.stream)
    for item in [] if args.speed_only else args.codecs.split(","):
        codec, resolution = item.split(":")
        for baseline in (False,) if args.managed_only else (False, True):
            extra = ("--baseline",) if baseline else ()
            churn = ("--bitrate-ladder", LADDER, "--adapt-every", "30s", "--reconnect-every", "2m")
            timing = ("--sample-interval", "1s", "--window", f"{stream_s / 3}s")
            options = [] if baseline else [f"--encoder-option={o}" for o in args.option]
            runs.append(soak("--codec", codec, "--resolution", resolution, "--fps", str(args.fps),
                             "--duration", f"{stream_s}s", "--bitrate", "5000", *churn, *timing,
                             *extra, *options))  # fmt: skip
    if speed:
        print(f"## Speed, {args.frames} frames of 1920x1080 H.264 (libx264) at 60 fps, "
              f"{args.rounds} interleaved rounds\n")  # fmt: skip
        print("Ratios are the median of the per-round ratios (the machine is noisy: compare "
              "runs of one round).\n")  # fmt: skip
        print("| loop | source | fps (median) | each round | vs bare PyAV, same source "
              "| vs ffmpeg CLI |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        cli = rounds.get("ffmpeg_cli testsrc2")
        for name, fps in speed.items():
            loop, source = name.split(" ")
            mine = np.array(rounds[name])
            bare = mine / np.array(rounds[f"bare_pyav {source}"])
            versus = f"{np.median(mine / np.array(cli)):.2f}" if cli else "n/a"
            each = " ".join(f"{v:.0f}" for v in mine)
            print(f"| {loop} | {source} | {fps:.0f} | {each} | {np.median(bare):.2f} | {versus} |")
    print(f"\n## Managed against baseline, {args.stream} of stream at {args.fps} fps, ladder "
          f"{LADDER} kbps every 30 s, reconnect every 2 min\n")  # fmt: skip
    print("| codec | run | encoder | peak RSS | growth | reuse | sessions | dropped | verdict |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        reuse = "n/a" if r["session_reuse_rate"] is None else f"{r['session_reuse_rate']:.1%}"
        print(f"| {r['codec']} {r['resolution']} | {'baseline' if r['baseline'] else 'managed'} | "
              f"{r['encoder']} | {r['peak_bytes'] / MB:.0f} MB | "
              f"{r['growth_bytes_per_hour'] / MB:+.1f} MB/h | {reuse} | {r['sessions_created']} | "
              f"{r['frames_dropped_memory']} | {r['verdict']} |")  # fmt: skip
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"speed_fps": speed, "speed_rounds": rounds, "runs": runs}, out, indent=1)


if __name__ == "__main__":
    main()
