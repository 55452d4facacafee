"""Reference-frame memory, measured: the heap an encoder holds against its reference count.

The soak's "reference frames" figure is modelled (references held x padded frame size, from
the reference policy): no probe sees inside an encoder's decoded picture buffer. This bench
measures what the model stands for. Each run opens one software encoder whose settings
differ only in the number of references, encodes enough moving frames to fill its
reference set, and reads the glibc heap in use (mallinfo2; x264 and x265 allocate their
frames there) and RSS before the open and after the frames. The slope of heap over
reference count is the measured cost of one reference; the model's figure stands beside it.

    python bench/references.py --json bench/references.json

Each run is its own process, rounds interleaved. Prints a table and writes JSON. Not a
test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

import numpy as np

import results as render  # bench/results.py: the one renderer of these tables
from sessions import test_frame
from vramguard import heap_stats, read
from vramguard.encode import EncoderConfig, open_encoder
from vramguard.pools.references import reference_frame_bytes
from vramguard.units import parse_resolution

ENCODERS = {"h264": "libx264", "hevc": "libx265"}


def options_for(codec: str, refs: int, gop: int) -> dict[str, str]:
    """Low-latency settings that differ only in the reference count."""
    if codec == "h264":
        return {"refs": str(refs), "bf": "0", "g": str(gop), "rc-lookahead": "0"}
    return {"x265-params": f"log-level=error:ref={refs}:bframes=0:rc-lookahead=0:keyint={gop}"}


def one_run(codec: str, width: int, height: int, refs: int, frames: int) -> dict[str, Any]:
    """Heap and RSS growth of one open session with `refs` references, after `frames`."""
    before_heap = heap_stats()
    before_rss = read().host_rss_bytes or 0
    gop = frames * 4  # no keyframe inside the run: the reference set stays full
    config = EncoderConfig(codec, width, height, 30, 4000, encoder=ENCODERS[codec],
                           options=options_for(codec, refs, gop))  # fmt: skip
    session = open_encoder(config)
    try:
        for i in range(frames):
            session.encode(test_frame(width, height, i))
        after_heap = heap_stats()
        after_rss = read().host_rss_bytes or 0
    finally:
        session.close()
    return {
        "codec": codec,
        "encoder": ENCODERS[codec],
        "refs": refs,
        "frames": frames,
        "heap_in_use_growth_bytes": (
            after_heap.in_use_bytes - before_heap.in_use_bytes
            if after_heap and before_heap
            else None
        ),
        "rss_growth_bytes": after_rss - before_rss,
    }


def slope(xs: list[int], ys: list[float]) -> float:
    """Least-squares bytes per reference."""
    return float(np.polyfit(np.array(xs, float), np.array(ys, float), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resolution", default="1920x1080")
    parser.add_argument("--codecs", default="h264,hevc")
    parser.add_argument("--refs", default="1,2,4,8")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", nargs=2, metavar=("CODEC", "REFS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    width, height = parse_resolution(args.resolution)
    if args.child:
        codec, refs = args.child
        print(json.dumps(one_run(codec, width, height, int(refs), args.frames)))
        return
    refs_list = [int(r) for r in args.refs.split(",")]
    runs: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        for codec in args.codecs.split(","):
            for refs in refs_list:
                child = subprocess.run(
                    [sys.executable, __file__, "--resolution", args.resolution, "--frames",
                     str(args.frames), "--child", codec, str(refs)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    model = reference_frame_bytes(width, height)
    per_codec: dict[str, Any] = {}
    for codec in args.codecs.split(","):
        mine = [r for r in runs if r["codec"] == codec]
        heap = [r for r in mine if r["heap_in_use_growth_bytes"] is not None]
        per_codec[codec] = {
            "encoder": ENCODERS[codec],
            "heap_bytes_per_reference": (
                slope([r["refs"] for r in heap], [r["heap_in_use_growth_bytes"] for r in heap])
                if heap
                else None
            ),
            "rss_bytes_per_reference": slope(
                [r["refs"] for r in mine], [r["rss_growth_bytes"] for r in mine]
            ),
        }
    document = {
        "resolution": args.resolution,
        "frames": args.frames,
        "rounds": args.rounds,
        "refs": refs_list,
        "model_bytes_per_reference": model,
        "per_codec": per_codec,
        "runs": runs,
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=1)
    print(render.references_table(document))


if __name__ == "__main__":
    main()
