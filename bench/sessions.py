"""Encoder sessions: pooled against always-new, side by side, per codec.

1. Equal work, a client starting a stream: "cold" opens an encoder and encodes one 1080p
   frame to its first packet; "warm" acquires a released session from the pool (which
   forces a keyframe, as a new client needs) and encodes the same frame to its first
   packet. Both first packets are keyframes. The acquire alone is shown apart, for what
   the pool's bookkeeping costs; it is not the speed-up.
2. A bitrate change in place against a rebuild (open at the new rate plus first packet).
3. 200 bitrate changes over a ladder (2000/3500/5000/8000 kbps) with a client reconnect
   every 4th change, a few frames each: the pool against opening a new session every time:
   reuse rate, sessions created, RSS after teardown with the heap left to glibc and after
   `trim_heap()`, the same trimming for both (the pool's own trim-on-close is off here).
   Each run in its own process, so one run's heap does not colour the other's.

    python bench/sessions.py --resolution 1920x1080 --json bench/sessions.json

Prints a table and writes JSON. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import av
import numpy as np

import results as render  # bench/results.py: the one renderer of these tables
from vramguard import heap_stats, read, trim_heap
from vramguard.encode import EncoderConfig, open_encoder
from vramguard.pools.sessions import SessionPool
from vramguard.units import parse_resolution

LADDER = (2000, 3500, 5000, 8000)
MB = 1e6


def test_frame(width: int, height: int, i: int) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    for n, plane in enumerate(frame.planes):
        data = np.frombuffer(plane, np.uint8)
        data[:] = (np.arange(data.size, dtype=np.uint32) * (n + 1) + 7 * i).astype(np.uint8)
    return frame


def config_for(codec: str, width: int, height: int, kbps: int) -> EncoderConfig:
    return EncoderConfig(codec, width, height, 60, kbps, max_bitrate_kbps=max(LADDER))


def first_packet(session: Any, frame: av.VideoFrame) -> bool:
    """Encode one frame to its packet; True when that packet is a keyframe."""
    packets = session.encode(frame)
    assert packets, "low-latency sessions give a packet per frame"
    return bool(packets[0].is_keyframe)


def timings(codec: str, width: int, height: int, repeats: int) -> dict[str, Any]:
    """Cold and warm starts interleaved, `repeats` of each; medians in ms."""
    frame = test_frame(width, height, 0)
    cold, warm, acquire, rebuild, in_place = [], [], [], [], []
    keyframes = {"cold": 0, "warm": 0}
    pool = SessionPool(open_encoder, max_idle=2)
    config = config_for(codec, width, height, LADDER[0])
    lease = pool.acquire(config)  # one warm session
    first_packet(lease.session, frame)
    lease.release()
    for i in range(repeats):
        began = time.perf_counter()
        session = open_encoder(config)
        keyframes["cold"] += first_packet(session, frame)
        cold.append(time.perf_counter() - began)
        session.close()
        began = time.perf_counter()
        lease = pool.acquire(config)
        acquired = time.perf_counter()
        keyframes["warm"] += first_packet(lease.session, frame)
        done = time.perf_counter()
        warm.append(done - began)
        acquire.append(acquired - began)
        began = time.perf_counter()
        changed = lease.session.set_bitrate(LADDER[1 + i % 3])
        in_place.append(time.perf_counter() - began if changed else float("nan"))
        lease.release()
        began = time.perf_counter()
        session = open_encoder(config_for(codec, width, height, LADDER[1 + i % 3]))
        first_packet(session, frame)
        rebuild.append(time.perf_counter() - began)
        session.close()
    encoder = lease.session.encoder
    reused = pool.stats().reused
    pool.close()
    finite = [x for x in in_place if x == x]
    return {
        "encoder": encoder,
        "repeats": repeats,
        "cold_open_first_packet_ms": statistics.median(cold) * 1e3,
        "warm_acquire_first_packet_ms": statistics.median(warm) * 1e3,
        "warm_speedup": statistics.median(cold) / statistics.median(warm),
        "speedup_per_repeat": [c / w for c, w in zip(cold, warm, strict=True)],
        "acquire_only_ms": statistics.median(acquire) * 1e3,
        "keyframes_first_packet": keyframes,
        "warm_reused": reused,
        "rebuild_ms": statistics.median(rebuild) * 1e3,
        "in_place_ms": statistics.median(finite) * 1e3 if finite else None,
    }


def ladder_run(codec: str, width: int, height: int, mode: str, changes: int) -> dict[str, Any]:
    """One process's run of the ladder: `pool` or `always-new` (a new encoder on every
    bitrate change and every reconnect, as streaming hosts do today)."""
    pool = (
        SessionPool(open_encoder, max_idle=len(LADDER) + 1, trim_heap_after_close=False)
        if mode == "pool"
        else None
    )
    created = 0
    rss_start = read().host_rss_bytes or 0

    def start(kbps: int) -> Any:
        nonlocal created
        config = config_for(codec, width, height, kbps)
        if pool is not None:
            return pool.acquire(config)
        created += 1
        return open_encoder(config)

    def stop(held: Any) -> None:
        if pool is not None:
            held.release()
        else:
            held.close()

    held = start(LADDER[0])
    frame_no = 0
    began = time.perf_counter()
    for change in range(1, changes + 1):
        kbps = LADDER[change % len(LADDER)]
        session = held.session if pool is not None else held
        reconnect = change % 4 == 0
        if reconnect or pool is None or not session.set_bitrate(kbps):
            stop(held)
            held = start(kbps)
            session = held.session if pool is not None else held
        for _ in range(3):
            session.encode(test_frame(width, height, frame_no))
            frame_no += 1
        session.drain()
    stop(held)
    seconds = time.perf_counter() - began
    stats = pool.stats().as_dict() if pool is not None else {"created": created, "reuse_rate": 0.0}
    if pool is not None:
        pool.close()
    heap = heap_stats()
    rss_after = read().host_rss_bytes or 0
    trim_heap()
    return {
        "codec": codec,
        "mode": mode,
        "changes": changes,
        "created": stats["created"],
        "reuse_rate": stats["reuse_rate"],
        "seconds": seconds,
        "rss_start_bytes": rss_start,
        "rss_after_bytes": rss_after,  # every session closed, heap left to glibc
        "rss_after_trim_bytes": read().host_rss_bytes or 0,  # then trim_heap()
        "heap_free_bytes": heap.free_bytes if heap else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resolution", default="1920x1080")
    parser.add_argument("--codecs", default="h264,hevc,av1")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--ladder-child", nargs=2, metavar=("CODEC", "MODE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    width, height = parse_resolution(args.resolution)
    if args.ladder_child:
        codec, mode = args.ladder_child
        print(json.dumps(ladder_run(codec, width, height, mode, args.changes)))
        return
    results: dict[str, Any] = {
        "resolution": args.resolution,
        "repeats": args.repeats,
        "changes": args.changes,
        "ladder_kbps": list(LADDER),
        "timings": {},
        "ladder": [],
    }
    for codec in args.codecs.split(","):
        results["timings"][codec] = timings(codec, width, height, args.repeats)
        for mode in ("pool", "always-new"):
            child = subprocess.run(
                [sys.executable, __file__, "--resolution", args.resolution, "--changes",
                 str(args.changes), "--ladder-child", codec, mode],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            results["ladder"].append(json.loads(child.stdout.strip().splitlines()[-1]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=1)
    print(render.sessions_tables(results))


if __name__ == "__main__":
    main()
