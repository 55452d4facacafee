"""What one warm 1080p SVT-AV1 session costs in memory, and what its level of parallelism
(`lp`) trades: RSS after opening 1 to 4 sessions (10 frames each, heap trimmed), and the fps
of one session, at SVT-AV1's default `lp` and at `lp=1`. Each setting in its own process,
interleaved rounds for the fps.

    python bench/svtav1_sessions.py --json bench/svtav1_sessions.json

Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

import numpy as np

import results as render  # bench/results.py: the one renderer of these tables

MB = 1e6
SETTINGS = {"default": "pred-struct=1:rc=2", "lp=1": "pred-struct=1:rc=2:lp=1"}


def child(params: str, mode: str) -> dict[str, Any]:
    """Runs in a fresh process: the memory of 4 sessions, or the fps of one."""
    import av
    import psutil

    from vramguard.encode import EncoderConfig, open_encoder
    from vramguard.heap import trim_heap
    from vramguard.sources import SyntheticSource

    process = psutil.Process()

    def rss() -> float:
        trim_heap()
        return float(process.memory_info().rss)

    source = SyntheticSource(1920, 1080)
    image = np.empty((1080 * 3 // 2, 1920), np.uint8)
    frame = av.VideoFrame.from_numpy_buffer(image, format="yuv420p")
    if mode == "memory":
        base = rss()
        held, growth = [], []
        for k in range(4):
            config = EncoderConfig("av1", 1920, 1080, 30, 2000 + 1000 * k, encoder="libsvtav1",
                                   options={"svtav1-params": params})  # fmt: skip
            session = open_encoder(config)
            for i in range(10):
                source.draw(image, i)
                session.encode(frame)
            held.append(session)
            growth.append(rss() - base)
        for session in held:
            session.close()
        return {"growth_bytes": growth}
    config = EncoderConfig("av1", 1920, 1080, 60, 5000, encoder="libsvtav1",
                           options={"svtav1-params": params})  # fmt: skip
    session = open_encoder(config)
    began = time.perf_counter()
    for i in range(240):
        source.draw(image, i)
        session.encode(frame)
    fps = 240 / (time.perf_counter() - began)
    session.close()
    return {"fps": fps}


def run_child(params: str, mode: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", params, mode],
                          capture_output=True, text=True, check=True)  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    memory = {name: run_child(params, "memory")["growth_bytes"]
              for name, params in SETTINGS.items()}  # fmt: skip
    fps: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, params in SETTINGS.items():
            fps[name].append(run_child(params, "fps")["fps"])
    ratios = np.array(fps["lp=1"]) / np.array(fps["default"])
    print(render.svtav1_table({"memory_growth_bytes": memory, "fps": fps}))
    print(f"\nlp=1 fps over default, median of per-round ratios: {np.median(ratios):.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"memory_growth_bytes": memory, "fps": fps}, out, indent=1)


if __name__ == "__main__":
    main()
