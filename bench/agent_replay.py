"""The node agent's memory and CPU over many hours, without waiting them: its fleet (a
Recorder, tracker and detector per process) fed 200 processes' readings at a 15 s interval
as fast as it takes them, `--hours` of them, in this process. The readings are synthetic
(12 processes growing 50 MB/h, the rest flat); discovery and /proc reads are not in it
(bench/agent.py measures those on real processes, for an hour of wall time).

    python bench/agent_replay.py --hours 6 --json bench/agent_replay.json

Records the process's RSS over what it was after the first pass, and the CPU per pass,
every simulated half hour. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import psutil

import results as render  # bench/results.py: the one renderer of these tables

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from vramguard.agent.census import Census  # noqa: E402
from vramguard.agent.discovery import ProcessInfo  # noqa: E402
from vramguard.agent.fleet import Fleet  # noqa: E402
from vramguard.probes import Reading  # noqa: E402
from vramguard.trend import DetectorConfig  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=200)
    parser.add_argument("--leaking", type=int, default=12)
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--interval-s", type=float, default=15.0)
    parser.add_argument("--window", type=float, default=3600.0, help="the detector's, seconds")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    me = psutil.Process()
    fleet = Fleet(DetectorConfig().scaled(args.window), host_budget_bytes=24 << 30)
    infos = [ProcessInfo(10_000 + i, 1, "enc") for i in range(args.processes)]

    def census(n: int) -> Census:
        t = n * args.interval_s
        done = Census(chosen=infos)
        for k, info in enumerate(infos):
            rss = 100e6 + (50e6 * t / 3600 if k < args.leaking else 0.0)
            done.readings[info.key] = Reading(pid=info.pid, host_rss_bytes=int(rss), threads=4,
                                              open_handles=20)  # fmt: skip
        return done

    fleet.update(census(0), 0.0)
    base = me.memory_info().rss
    passes = int(args.hours * 3600 / args.interval_s)
    every = int(1800 / args.interval_s)
    points: list[dict[str, Any]] = []
    cpu0, last = time.process_time(), time.process_time()
    for n in range(1, passes + 1):
        fleet.update(census(n), n * args.interval_s)
        if n % every == 0:
            now = time.process_time()
            point = {"hours": n * args.interval_s / 3600,
                     "rss_over_first_bytes": me.memory_info().rss - base,
                     "cpu_ms_per_pass": 1000 * (now - last) / every,
                     "leaking": len(fleet.leaking())}  # fmt: skip
            last = now
            points.append(point)
            print(render.agent_replay_point(point), flush=True)
    document = {
        "command": " ".join(["python bench/agent_replay.py", *sys.argv[1:]]),
        "processes": args.processes, "leaking": args.leaking, "interval_s": args.interval_s,
        "window_s": args.window, "points": points,
        "cpu_ms_per_pass_all": 1000 * (time.process_time() - cpu0) / passes,
    }  # fmt: skip
    fleet.close(passes * args.interval_s)
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=1) + "\n")
    print(render.agent_replay_table(document))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
