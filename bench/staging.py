"""Staging buffers and heap retention.

1. 1080p frames into libx264 (ultrafast, zerolatency): a new frame per frame
   (`VideoFrame.from_ndarray`, what most hosts do) against the staging pool (a pooled
   frame the source draws into): input cost per frame, fps, peak RSS. Each in its own
   process so the peak RSS of one does not hide the other's.
2. 100 SVT-AV1 1080p session cycles (open, 5 frames, close), without and with
   `trim_heap()` after each close: RSS after the first cycle and after the last.

    python bench/staging.py --frames 600 --cycles 100 --json bench/staging.json

Prints a table and writes JSON. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

import av
import numpy as np

import results as render  # bench/results.py: the one renderer of these tables
from vramguard import read, trim_heap
from vramguard.encode import EncoderConfig, open_encoder
from vramguard.pools.staging import StagingPool, frame_bytes

W, H = 1920, 1080
MB = 1e6


def draw(target: np.ndarray, i: int) -> None:
    """The frame source: a cheap moving pattern drawn into a (H*3/2, W) I420 buffer."""
    target[: H // 2] = (i * 3) % 256
    target[H // 2 : H] = (i * 5) % 256
    target[H:] = 128


def encode_run(mode: str, frames: int) -> dict[str, Any]:
    session = open_encoder(EncoderConfig("h264", W, H, 60, 8000, encoder="libx264"))
    pool = StagingPool(8 * frame_bytes(W, H, "yuv420p"))
    source = np.empty((H * 3 // 2, W), np.uint8)
    input_s = 0.0
    began = time.perf_counter()
    for i in range(frames):
        if mode == "new-frame":
            draw(source, i)
            start = time.perf_counter()
            frame = av.VideoFrame.from_ndarray(source, format="yuv420p")
            input_s += time.perf_counter() - start
            session.encode(frame)
        else:
            start = time.perf_counter()
            lease = pool.acquire(W, H)
            input_s += time.perf_counter() - start
            draw(lease.array, i)
            session.encode(lease.frame)
            lease.release(fence=session.fence())
    seconds = time.perf_counter() - began
    session.close()
    pool.close()
    return {
        "mode": mode,
        "frames": frames,
        "input_ms_per_frame": input_s / frames * 1e3,
        "fps": frames / seconds,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def cycle_run(trim: bool, cycles: int) -> dict[str, Any]:
    frame = av.VideoFrame(W, H, "yuv420p")
    after_first = 0
    for cycle in range(cycles):
        session = open_encoder(EncoderConfig("av1", W, H, 60, 5000, encoder="libsvtav1"))
        for _ in range(5):
            session.encode(frame)
        session.close()
        if trim:
            trim_heap()
        if cycle == 0:
            after_first = read().host_rss_bytes or 0
    return {
        "trim": trim,
        "cycles": cycles,
        "rss_after_first_bytes": after_first,
        "rss_after_last_bytes": read().host_rss_bytes or 0,
    }


def child(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, value = args.child
        result = (
            encode_run(value, args.frames)
            if kind == "encode"
            else cycle_run(value == "trim", args.cycles)
        )
        print(json.dumps(result))
        return
    runs = [
        child("--frames", str(args.frames), "--child", "encode", m) for m in ("new-frame", "pool")
    ]
    cycles = [child("--cycles", str(args.cycles), "--child", "cycles", m) for m in ("keep", "trim")]
    document = {"encode": runs, "cycles": cycles}
    print(render.staging_tables(document))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=1)


if __name__ == "__main__":
    main()
