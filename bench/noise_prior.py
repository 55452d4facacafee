"""A noise prior from an earlier run (`noise_from`, `analyze --noise-from`): what it buys.

A run's first hours cannot tell a slow wander from a leak; the same process's previous run
can. Each trace here is one process run twice: a family's 60 h trace (parameters drawn at
random as in bench/leak_detection.py) split into an earlier day and 36 h judged on their
own, healthy and with 10 MB/h added from a random hour 4-20 h into them (the families whose
false alarms come in a run's first hours, and two others). Judged three ways:
ours alone, ours with the earlier day's noise (`noise_prior`), and the exact-noise
reference (bench/exact_noise.py). Healthy runs alarmed, leak delay p50/p90 (from the leak's
start to the first alarm at or after it; never when it was not found) and the share of
leaking runs alarmed before their leak. Not a test: it asserts nothing.

    python bench/noise_prior.py --runs 20 --seed 0 --json bench/noise_prior.json
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from exact_noise import exact_alarms
from leak_detection import delay_figures, our_alarms, report, seeded_parser
from vramguard.scenarios import Scenario, draw
from vramguard.trend import DetectorConfig, noise_from

HOUR = 3600.0
MB = 1e6
FAMILIES = ("white", "white+ar", "wander", "one-step", "restart", "pool-steps", "gaps")
WAYS = ("alone", "with prior", "exact")
EARLIER_H = 24.0
JUDGED_H = 36.0


def run_one(job: tuple[str, int]) -> dict[str, Any]:
    family, seed = job
    trace = draw(family, seed, hours=EARLIER_H + JUDGED_H)
    earlier = trace.t < EARLIER_H * HOUR
    prior = noise_from(trace.t[earlier], trace.values[earlier])
    t = trace.t[~earlier] - EARLIER_H * HOUR
    healthy = trace.values[~earlier]
    start = float(np.random.default_rng([seed, 12]).uniform(4.0, 20.0)) * HOUR
    leaking = healthy + np.maximum(t - start, 0.0) / HOUR * 10 * MB
    record: dict[str, Any] = {"family": family, "seed": seed, "leak_start_t": start,
                              "params": trace.params}  # fmt: skip
    for kind, values in (("healthy", healthy), ("leak", leaking)):
        scenario = Scenario(family, seed, t, values, None, start if kind == "leak" else None,
                            trace.params)  # fmt: skip
        record[kind] = {
            "alone": our_alarms(scenario, DetectorConfig()),
            "with prior": our_alarms(scenario, DetectorConfig(), prior),
        }
        exact = exact_alarms(scenario, DetectorConfig())
        if exact is not None:  # only where the noise's covariance is known exactly
            record[kind]["exact"] = exact
    return record


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for family in FAMILIES:
        rows = [r for r in records if r["family"] == family]
        entry: dict[str, Any] = {"runs": len(rows)}
        for way in WAYS:
            if any(way not in r["healthy"] for r in rows):
                continue
            delays = []
            for r in rows:
                after = [a for a in r["leak"][way] if a >= r["leak_start_t"]]
                delays.append((after[0] - r["leak_start_t"]) / HOUR if after else math.inf)
            entry[way] = {
                "runs_alarmed": sum(1 for r in rows if r["healthy"][way]) / len(rows),
                **delay_figures(delays),
                "early": sum(1 for r in rows if any(a < r["leak_start_t"] for a in r["leak"][way]))
                / len(rows),
            }
        out[family] = entry
    return out


def _h(x: float) -> str:
    return "never" if math.isinf(x) else f"{x:.2f} h"


def render(data: dict[str, Any]) -> str:
    lines = [
        "| family | runs | " + " | ".join(WAYS) + " |",
        "|---|---|" + "---|" * len(WAYS),
    ]
    for family, e in data["summary"].items():
        cells = [
            f"healthy {e[w]['runs_alarmed']:.0%} alarmed; 10 MB/h p50 {_h(e[w]['p50_h'])}, "
            f"p90 {_h(e[w]['p90_h'])}, missed {e[w]['missed']:.0%}, early {e[w]['early']:.0%}"
            if w in e
            else "-"
            for w in WAYS
        ]
        lines.append(f"| {family} | {e['runs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    args = seeded_parser(__doc__, 20).parse_args()
    jobs = [(f, s) for f in FAMILIES for s in range(args.seed, args.seed + args.runs)]
    with ProcessPoolExecutor(args.workers) as pool:
        records = list(pool.map(run_one, jobs, chunksize=2))
    data = {
        "command": f"python bench/noise_prior.py --runs {args.runs} --seed {args.seed}",
        "summary": summarise(records),
    }
    report(data, render(data), args.json)


if __name__ == "__main__":
    main()
