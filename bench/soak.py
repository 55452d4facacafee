"""The soak, side by side: its speed against a bare PyAV loop and the ffmpeg command line,
and the managed pipeline against the baseline (the unmanaged way) per codec.

1. Frames per second at 1080p H.264 (libx264 ultrafast, zerolatency, CBR 5000 kbps, GOP 2 s,
   no B-frames, 3 references): `vramguard soak`'s loop (staging pool, session pool,
   reference policy, sampler; with and without drawing ahead), a bare PyAV encode loop with
   the same source and settings, each on the synthetic source and on FFmpeg's testsrc2, and
   `ffmpeg -f lavfi -i testsrc2 ... -f null -` with the same encoder settings; interleaved
   rounds, ratios per round.
2. Managed against `--baseline` over `--stream` of stream time with a bitrate change every
   30 s (2000/3500/5000/8000 kbps) and a reconnect every 2 minutes, per codec, side by side:
   peak RSS, RSS after teardown, sessions opened, keyframes (and those a rate change caused),
   session reuse, the idle-memory budget the managed soak chose, the rate measured on each
   rung against the asked one, growth per hour. On testsrc2 by default: the synthetic
   source is too simple for 1080p H.264 to fill 5000 kbps (a fresh session gives ~2600), so
   rate tracking could not be judged on it.
3. For H.264 (`--quality`, on by default with h264 in `--codecs`), `bench/adapt.py`'s
   comparison of one session changed in place against a fresh session per rung: rate and
   PSNR per rung.

    python bench/soak.py --no-speed --stream 20m --json bench/soak_adapt_20m.json

Each run is its own process. Prints a table and writes JSON. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
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


def rung_errors(run: dict[str, Any]) -> dict[int, float]:
    """Measured rate over asked, minus one, per rung (all its turns together)."""
    return {r["kbps"]: r["measured_kbps"] / r["kbps"] - 1 for r in run["rungs"]
            if r["measured_kbps"] is not None}  # fmt: skip


def side_by_side(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per codec and size, the managed run against the baseline: the issue's figures."""
    rows = []
    for managed in (r for r in runs if not r["baseline"]):
        key = (managed["codec"], managed["resolution"])
        baseline = next((r for r in runs if r["baseline"] and (r["codec"], r["resolution"]) == key),
                        None)  # fmt: skip
        row: dict[str, Any] = {"codec": key[0], "resolution": key[1]}
        for name, run in (("managed", managed), ("baseline", baseline)):
            if run is None:
                continue
            errors = rung_errors(run)
            row[name] = {
                "encoder": run["encoder"],
                "peak_bytes": run["peak_bytes"],
                "after_teardown_bytes": run["after_teardown_bytes"],
                "sessions_opened": run["sessions_created"],
                "requests": run["acquisitions"],
                "reuse": run["session_reuse_rate"],
                "rate_changes": run["rate_changes"],
                "adapted_in_place": run["adapted_in_place"],
                "keyframes": run["keyframes"],
                "rate_change_keyframes": run["rate_change_keyframes"],
                "max_idle_bytes": run["max_idle_bytes"],
                "rung_error": {str(k): v for k, v in errors.items()},
                "max_abs_rung_error": max((abs(v) for v in errors.values()), default=None),
                "growth_bytes_per_hour": run["growth_bytes_per_hour"],
                "growth_ci_bytes_per_hour": run["growth_ci_bytes_per_hour"],
                "verdict": run["verdict"],
                "missed": [c["name"] for c in run["criteria"] if not c["passed"]],
                "fps": run["fps"],
            }
        if baseline is not None:
            row["peak_ratio"] = managed["peak_bytes"] / baseline["peak_bytes"]
        rows.append(row)
    return rows


def in_place_quality(resolution: str, fps: int) -> dict[str, Any]:
    """bench/adapt.py's H.264 ladder, in place against fresh, in a process of its own."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "adapt.json")
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "adapt.py")
        subprocess.run([sys.executable, script, "--skip", "check,costs", "--resolution",
                        resolution, "--fps", str(fps), "--json", path],
                       check=True, capture_output=True)  # fmt: skip
        with open(path, encoding="utf-8") as handle:
            quality: dict[str, Any] = json.load(handle)["h264_ladder"]
    return quality


def print_side_by_side(out: dict[str, Any]) -> None:
    print(f"\n## Managed against baseline, {out['stream_s'] / 60:.0f} min of stream "
          f"({out['source']}) at {out['fps']} fps, ladder {LADDER} kbps every 30 s, reconnect "
          "every 2 min\n")  # fmt: skip
    print("| codec | run | encoder | peak RSS | after teardown | sessions opened | keyframes "
          "(rate changes) | reuse | idle budget | worst rung | growth | verdict |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in out["side_by_side"]:
        for name in ("managed", "baseline"):
            r = row.get(name)
            if r is None:
                continue
            reuse = "n/a" if r["reuse"] is None else f"{r['reuse']:.1%}"
            budget = "n/a" if r["max_idle_bytes"] is None else f"{r['max_idle_bytes'] / MB:.0f} MB"
            worst = "n/a" if r["max_abs_rung_error"] is None else f"{r['max_abs_rung_error']:.1%}"
            verdict = r["verdict"] + (f" ({', '.join(r['missed'])})" if r["missed"] else "")
            growth = (
                "n/a"
                if r["growth_bytes_per_hour"] is None
                else f"{r['growth_bytes_per_hour'] / MB:+.1f} MB/h"
            )
            print(f"| {row['codec']} {row['resolution']} | {name} | {r['encoder']} | "
                  f"{r['peak_bytes'] / MB:.0f} MB | {r['after_teardown_bytes'] / MB:.0f} MB | "
                  f"{r['sessions_opened']} of {r['requests']} | {r['keyframes']} "
                  f"({r['rate_change_keyframes']}) | {reuse} | {budget} | {worst} | "
                  f"{growth} | {verdict} |")  # fmt: skip
    print("\nRate per rung, measured against asked (all turns of a rung together):\n")
    rungs = [int(k) for k in LADDER.split(",")]
    print("| codec | run | " + " | ".join(f"{k} kbps" for k in rungs) + " |")
    print("|---|---|" + "---|" * len(rungs))
    for row in out["side_by_side"]:
        for name in ("managed", "baseline"):
            if name in row:
                errors = row[name]["rung_error"]
                cells = [f"{errors[str(k)]:+.1%}" if str(k) in errors else "n/a" for k in rungs]
                label = f"{row['codec']} {row['resolution']}"
                print(f"| {label} | {name} | " + " | ".join(cells) + " |")
    ratios = ", ".join(f"{r['codec']} {r['peak_ratio']:.2f}" for r in out["side_by_side"]
                       if "peak_ratio" in r)  # fmt: skip
    if ratios:
        print(f"\nManaged peak over baseline peak: {ratios}")


def print_quality(quality: dict[str, Any]) -> None:
    print(f"\n## H.264 {quality['resolution']}: one session changed in place against a "
          f"fresh session per rung ({quality['rung_s']:.0f} s a rung, "
          f"{quality['source']})\n")  # fmt: skip
    print("| asked | in place | fresh | PSNR in place | PSNR fresh | delta |")
    print("|---|---|---|---|---|---|")
    for r in quality["rungs"]:
        print(f"| {r['asked_kbps']} kbps | {r['in_place_kbps']:.0f} ({r['in_place_error']:+.1%}) | "
              f"{r['fresh_kbps']:.0f} ({r['fresh_error']:+.1%}) | {r['in_place_psnr_db']:.2f} dB | "
              f"{r['fresh_psnr_db']:.2f} dB | {r['psnr_delta_db']:+.2f} dB |")  # fmt: skip
    print(
        f"\nKeyframes caused by its {quality['bitrate_changes']} rate changes: "
        f"{quality['keyframes_after_rate_change']}"
    )


def save(path: str | None, out: dict[str, Any]) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(out, handle, indent=1)


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
    parser.add_argument("--source", default="testsrc2", choices=("testsrc2", "synthetic"),
                        help="of the managed/baseline runs")  # fmt: skip
    parser.add_argument("--quality", action=argparse.BooleanOptionalAction, default=True,
                        help="H.264: in place against fresh sessions (bench/adapt.py)")  # fmt: skip
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
    out: dict[str, Any] = {"command": " ".join(["python", "bench/soak.py", *sys.argv[1:]]),
                           "speed_fps": speed, "speed_rounds": rounds, "runs": []}  # fmt: skip
    stream_s = parse_duration(args.stream)
    out.update(stream_s=stream_s, fps=args.fps, source=args.source, ladder_kbps=LADDER)
    for item in [] if args.speed_only else args.codecs.split(","):
        codec, resolution = item.split(":")
        for baseline in (False,) if args.managed_only else (False, True):
            extra = ("--baseline",) if baseline else ()
            churn = ("--bitrate-ladder", LADDER, "--adapt-every", "30s", "--reconnect-every", "2m")
            timing = ("--sample-interval", "1s", "--window", f"{stream_s / 3}s")
            options = [] if baseline else [f"--encoder-option={o}" for o in args.option]
            out["runs"].append(soak("--codec", codec, "--resolution", resolution, "--fps",
                                    str(args.fps), "--duration", f"{stream_s}s", "--bitrate",
                                    "5000", "--source", args.source, *churn, *timing, *extra,
                                    *options))  # fmt: skip
            out["side_by_side"] = side_by_side(out["runs"])
            save(args.json, out)  # after each run: a long bench cut short keeps what it did
    if args.quality and any(item.startswith("h264:") for item in args.codecs.split(",")):
        resolution = next(i for i in args.codecs.split(",") if i.startswith("h264:"))[5:]
        out["h264_in_place"] = in_place_quality(resolution, args.fps)
        save(args.json, out)
    runs = out["runs"]
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
    if runs:
        print_side_by_side(out)
    if "h264_in_place" in out:
        print_quality(out["h264_in_place"])
    save(args.json, out)


if __name__ == "__main__":
    main()
