"""Leak detection on randomized trace families: ours, the plan's and a published method.

Every family draws its parameters at random from wide ranges (`vramguard.scenarios`), so
the figures sample the space of healthy and leaking processes rather than the few shapes
the detector was built against. For each family and seed it replays three detectors online
over the same trace, and a reference told the noise, and records every alarm episode:

- ours: `vramguard.trend.LeakDetector`, given the load column where the family has one;
- the plan's: least squares over the last 10 samples, alarm above 1 MB/min;
- Mann-Kendall with the Hamed-Rao correction and Sen's slope (`pymannkendall`) over the
  last 4 hours, evaluated every 15 minutes on one-minute means: an alarm when p < 0.001 and
  Sen's slope is at least 1 MB/h; an episode ends after an hour without one;
- exact: our ramp tests judged with the noise's true covariance (`bench/exact_noise.py`),
  for the families whose noise is white, AR(1) or wander alone: the headroom.

It prints, per healthy family, false-alarm episodes per stream-day and the share of runs
alarmed; per leaking family, the detection delay p50/p90 (from the leak's start to the
first alarm at or after it), the share missed and the share alarmed before the leak began.
Then the time to analyse a 48 h log at one sample a second. Writes every figure as JSON.
Not a test: it asserts nothing.

    pip install '.[bench]'    # pymannkendall, the published reference
    python bench/leak_detection.py --runs 30 --seed 0 --json bench/leak_detection.json

`--seed` picks the first seed (runs use seed, seed+1, ...): 0 is the recorded one; any
other draws new traces.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from exact_noise import exact_alarms
from vramguard.noise import Variogram
from vramguard.scenarios import FAMILIES, HEALTHY, Scenario, draw
from vramguard.trend import DetectorConfig, LeakDetector, detect_leak

HOUR = 3600.0
MB = 1e6
DETECTORS = ("ours", "plan", "mann-kendall", "exact")

#: the targets of issue 12, by family: (delay p90 in hours) for leaks
TARGET_P90_H = {
    "white+leak10": 2.0,
    "mix95+leak10": 3.0,
    "mix95+leak5": 6.0,
    "load+leak20": 2.0,
    "staircase32/3h": 6.0,  # the third step comes 6 h after the first
    "dense+leak30": 1.5,
}
TARGET_HEALTHY_RUNS = 0.02
TARGET_ALARMS_PER_DAY = 1 / 30


def episodes(times: np.ndarray, alarming: np.ndarray, quiet_s: float) -> list[float]:
    """Start times of alarm episodes: alarming after at least `quiet_s` without."""
    starts: list[float] = []
    last = -math.inf
    for t in times[alarming].tolist():
        if t - last > quiet_s:
            starts.append(t)
        last = t
    return starts


def plan_alarms(t: np.ndarray, v: np.ndarray) -> list[float]:
    """The plan's detector: least squares over the last 10 samples, alarm above 1 MB/min;
    an episode starts when it goes from quiet to alarming."""
    if len(t) < 10:
        return []
    tw = np.lib.stride_tricks.sliding_window_view(t / 60.0, 10)
    vw = np.lib.stride_tricks.sliding_window_view(v / MB, 10)
    tc = tw - tw.mean(axis=1, keepdims=True)
    slope = (tc * (vw - vw.mean(axis=1, keepdims=True))).sum(axis=1) / (tc * tc).sum(axis=1)
    on = slope > 1.0
    rising = on & ~np.concatenate(([False], on[:-1]))
    return t[9:][rising].tolist()


def minute_means(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    index = ((t - t[0]) // 60.0).astype(np.int64)
    starts = np.concatenate(([0], np.flatnonzero(np.diff(index)) + 1))
    counts = np.diff(np.concatenate((starts, [len(t)])))
    return np.add.reduceat(t, starts) / counts, np.add.reduceat(v, starts) / counts


def mann_kendall_alarms(t: np.ndarray, v: np.ndarray) -> list[float]:
    """Hamed-Rao modified Mann-Kendall and Sen's slope over the last 4 h, every 15 min."""
    import pymannkendall as mk

    tm, vm = minute_means(t, v)
    alarm_times: list[float] = []
    next_eval = tm[0] + 4 * HOUR
    for i in range(len(tm)):
        if tm[i] < next_eval:
            continue
        next_eval += 15 * 60.0
        window = (tm > tm[i] - 4 * HOUR) & (tm <= tm[i])
        if window.sum() < 60:
            continue
        result = mk.hamed_rao_modification_test(vm[window])
        spacing_h = float(np.median(np.diff(tm[window]))) / HOUR
        if result.p < 0.001 and result.slope / spacing_h >= 1 * MB:
            alarm_times.append(float(tm[i]))
    return episodes(np.asarray(alarm_times), np.ones(len(alarm_times), bool), HOUR)


def our_alarms(
    trace: Scenario, config: DetectorConfig, noise_prior: Variogram | None = None
) -> list[float]:
    detector = LeakDetector(config, noise_prior=noise_prior)
    detector.update_many(trace.t, trace.values, trace.load)
    detector.flush()
    return [a.t for a in detector.alarms]


def run_one(job: tuple[str, int, DetectorConfig, tuple[str, ...]]) -> dict[str, Any]:
    name, seed, config, which = job
    trace = draw(name, seed)
    record: dict[str, Any] = {
        "family": name,
        "seed": seed,
        "hours": float(trace.t[-1] - trace.t[0]) / HOUR,
        "leak_start_t": trace.leak_start_t,
        "params": trace.params,
    }
    if "ours" in which:
        record["ours"] = our_alarms(trace, config)
    if "plan" in which:
        record["plan"] = plan_alarms(trace.t, trace.values)
    if "mann-kendall" in which:
        record["mann-kendall"] = mann_kendall_alarms(trace.t, trace.values)
    if "exact" in which:
        exact = exact_alarms(trace, config)
        if exact is not None:  # only where the noise's covariance is known exactly
            record["exact"] = exact
    return record


def shaped_like_a_target(record: dict[str, Any]) -> bool | None:
    """Whether a healthy run holds, somewhere, the very shape a detection target requires
    an alarm on (None for the families where that is not in question):

    - pool-steps: a rise of three steps held within 6 h, what the staircase target (three
      32 MB steps within 6 h) must be called a leak for;
    - daily-no-load: a cycle that climbs at 5 MB/h or more for 6 h or more, what the 5 MB/h
      target (found within 6 h) must be called a leak for: with a swing of S MB the climb
      reaches pi * S / 24 MB/h and stays above 5 MB/h for (24 / pi) acos(120 / (pi S)) h.
    """
    params = record.get("params", {})
    if record["family"] == "pool-steps":
        moves = [(0.0, 0)] + [(float(h), int(level)) for h, level in params["pool_moves"]]
        for i, (hour, level) in enumerate(moves):
            before = [lv for h, lv in moves[: i + 1] if h >= hour - 6.0]
            at_start = [lv for h, lv in moves[: i + 1] if h < hour - 6.0][-1:]
            if level - min(before + at_start) >= 3:
                return True
        return False
    if record["family"] == "daily-no-load":
        steepest = math.pi * float(params["cycle_mb"]) / 24.0  # MB/h
        hours = 24.0 / math.pi * math.acos(min(1.0, 5.0 / steepest))
        return hours >= 6.0
    return None


def delay_h(record: dict[str, Any], detector: str) -> float:
    """Hours from the leak's start to the first alarm at or after it (inf when missed)."""
    start = record["leak_start_t"]
    after = [a for a in record[detector] if a >= start]
    return (after[0] - start) / HOUR if after else math.inf


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    k = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


def delay_figures(delays: list[float]) -> dict[str, float]:
    """p50 and p90 of leak delays (hours; inf for a leak never found) and the share missed."""
    return {
        "p50_h": percentile(delays, 50),
        "p90_h": percentile(delays, 90),
        "missed": sum(1 for d in delays if math.isinf(d)) / len(delays),
    }


def summarise(records: list[dict[str, Any]], which: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in FAMILIES:
        rows = [r for r in records if r["family"] == name]
        if not rows:
            continue
        entry: dict[str, Any] = {"runs": len(rows)}
        if name in HEALTHY:
            days = sum(r["hours"] for r in rows) / 24
            entry["stream_days"] = days
            shaped = [shaped_like_a_target(r) for r in rows]
            if any(s is not None for s in shaped):
                entry["target_shaped_runs"] = sum(1 for s in shaped if s) / len(rows)
        else:
            # before the leak starts, a leaking run is a healthy one
            days = sum(r["leak_start_t"] / HOUR for r in rows) / 24
            entry["stream_days_before_leak"] = days
        for det in which:
            judged = [r for r in rows if det in r]
            if len(judged) < len(rows):  # the exact reference: its families or none
                continue
            if name in HEALTHY:
                alarms = sum(len(r[det]) for r in rows)
                entry[det] = {
                    "alarms_per_day": alarms / days,
                    "runs_alarmed": sum(1 for r in rows if r[det]) / len(rows),
                    "alarmed_seeds": [r["seed"] for r in rows if r[det]],
                }
            else:
                delays = [delay_h(r, det) for r in rows]
                early = [r["seed"] for r in rows if any(a < r["leak_start_t"] for a in r[det])]
                entry[det] = {
                    **delay_figures(delays),
                    "runs_alarmed_before_start": len(early) / len(rows),
                    "early_seeds": early,
                }
        out[name] = entry
    return out


def synthetic_48h(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, 48 * HOUR, 1.0)
    v = 500 * MB + rng.normal(0, 5 * MB, len(t)) + np.maximum(t - 20 * HOUR, 0) / HOUR * 10 * MB
    return t, v


def analysis_time(repeats: int = 3) -> dict[str, float]:
    """Seconds to replay detect_leak over 48 h at one sample a second (172,800 samples)."""
    t, v = synthetic_48h()
    best = math.inf
    for _ in range(repeats):
        began = time.perf_counter()
        detect_leak(t, v)
        best = min(best, time.perf_counter() - began)
    return {"samples": float(len(t)), "seconds": best}


def cli_time(repeats: int = 3) -> dict[str, float]:
    """Seconds for `vramguard analyze LOG --json` end to end (start, parse, replay) on a
    48 h JSONL log at one sample a second."""
    import subprocess
    import sys
    import tempfile

    t, v = synthetic_48h()
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/48h.jsonl"
        header = {"schema": "vramguard.samples/1", "started": "2026-11-28T00:00:00Z"}
        with open(path, "w", encoding="utf-8") as out:
            out.write(json.dumps({**header, "source": {}, "config": {}}) + "\n")
            for ti, vi in zip(t.tolist(), v.tolist(), strict=True):
                out.write(f'{{"t":{ti},"wall_s":{ti},"process_gpu_bytes":{int(vi)}}}\n')
        best = math.inf
        for _ in range(repeats):
            began = time.perf_counter()
            subprocess.run([sys.executable, "-m", "vramguard", "analyze", path, "--json"],
                           capture_output=True, check=False)  # fmt: skip
            best = min(best, time.perf_counter() - began)
    return {"samples": float(len(t)), "seconds": best}


def _h(x: float) -> str:
    return "never" if math.isinf(x) else "n/a" if math.isnan(x) else f"{x:.2f}"


def _cell(name: str, e: dict[str, Any], det: str) -> str:
    d = e.get(det)
    if d is None:
        return "-"
    if name in HEALTHY:
        return f"{d['alarms_per_day']:.3f}/day, {d['runs_alarmed']:.0%} runs"
    return (
        f"p50 {_h(d['p50_h'])} h, p90 {_h(d['p90_h'])} h, missed {d['missed']:.0%}, "
        f"early {d['runs_alarmed_before_start']:.0%}"
    )


def _verdict(name: str, e: dict[str, Any]) -> str:
    ours = e.get("ours")
    if ours is None:
        return ""
    if name in HEALTHY:
        ok = (
            ours["runs_alarmed"] <= TARGET_HEALTHY_RUNS
            and ours["alarms_per_day"] <= TARGET_ALARMS_PER_DAY
        )
        return "met" if ok else "**missed**"
    target = TARGET_P90_H.get(name)
    if target is None:
        return ""
    return f"{'met' if ours['p90_h'] <= target else '**missed**'} (p90 <= {target:g} h)"


INTRO = """\
Every family draws its parameters at random, per seed, from wide ranges
(`vramguard/scenarios.py`): white noise 1-8 MB; white plus AR(1) of 2-10 MB with phi
0.8-0.99 per minute; a mean-reverting wander with a time constant of 1-6 h (2-10 MB) over
white; Student-t noise (2-5 degrees of freedom) with rare spikes of 20-200 MB; GC sawtooth
of 5 min-2 h and 5-60 MB; a pool that grows and shrinks by 8-64 MB steps (between empty
and four steps, every 1-4 h on average); one step of 16-128 MB; gaps of 10-120 min and
jittered intervals; one or two restarts; a daily load cycle of 30-150 MB at 1-8 MB a
session, with the sessions column (daily-load) and without it (daily-no-load); white of
1-5 MB with an AR(1) of 5-30 min and a wander of 2-12 h, 2-8 MB each (two-scale); white plus
AR(1) rounded to chunks of 2-8 MB (quantized); a load cycle
that is not daily (a sine or triangle of 10-60 MB, period 1-6 h, over white noise of 1-5
MB); a GPU process's memory as a driver reports it (flat, moving between two to five levels
2-20 MiB apart, held 5 min-2 h on average, whole MiB, no other noise). Every trace
starts with a warm-up of 0-150 MB. Leaks start at a random hour from 4 h to 20 h (and, in
the two from-start families, with the process: no clean history to learn from): 10 MB/h
on white, 10 and 5 MB/h on white plus AR(1) with phi up to 0.95 (mix95: the issue's
targets), 5-40 MB/h on each noise family, 20 MB/h on the daily load cycle (with the
column), a per-session leak of 0.3-2 MB/h per session, 32 MB every 3 h, random staircases
(16-64 MB every 1-4 h), 30 MB/h at one sample a second (dense), and 5-40 MB/h in 2 MiB
pages never freed on the GPU levels. 36 hours a trace, one
sample a minute unless dense. An alarm counts as an episode (quiet to alarming); delay runs
from the leak's start to the first alarm at or after it; "early" is the share of leaking
runs that alarmed before their leak began. Ours reads the load column where the family has
one; the others cannot. Mann-Kendall: the Hamed-Rao modified test and Sen's slope over the
last 4 h, every 15 min, an alarm when p < 0.001 and the slope is at least 1 MB/h. The plan's:
least squares over the last 10 samples, alarm above 1 MB/min. Exact: a reference told the
noise (`bench/exact_noise.py`): our ramp tests with the noise's true covariance from the
drawn parameters, no learning margins; "-" where the family's noise has none here. Where it
meets a target ours misses, the miss is the cost of learning the noise from the process's
own short history, not of the tests. Targets (issue 12): every
healthy family at most 1 false-alarm episode per 30 stream-days and at most 2% of runs
alarmed; the delay targets are in the last column."""


SHAPED_NOTE = """\
Two healthy families hold the shape a detection target requires an alarm on, so their 2%
target conflicts with it: in {pool:.0%} of the pool-steps runs the pool rises by three steps
and holds them within 6 h (the staircase target: three 32 MB steps within 6 h are a leak),
and in {daily:.0%} of the daily-no-load runs the cycle climbs at 5 MB/h or more for 6 h or
more (the 5 MB/h target: found within 6 h). Without the load column nothing in the memory
series tells these apart at the moment the target asks for the alarm; with the column
(daily-load) the cycle is explained and the run is not alarmed. See
`shaped_like_a_target` in this bench."""


def _real_rows() -> list[str]:
    """The real healthy processes recorded by bench/record_real.py, as the detector judged
    them (tests/data/real/verdicts.json)."""
    path = Path(__file__).resolve().parent.parent / "tests" / "data" / "real" / "verdicts.json"
    if not path.exists():
        return []
    verdicts = json.loads(path.read_text(encoding="utf-8"))
    rows = [
        "| process | samples | duration | growth, whole series | run's verdict | analyze |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in verdicts.items():
        a = entry.get("analyze", {})
        slope = a.get("slope_bytes_per_hour")
        shown = "n/a" if slope is None else f"{slope / MB:+.2f} MB/h"
        rows.append(
            f"| {name} | {a.get('samples')} | {a.get('duration_s', 0) / 60:.0f} min | {shown} "
            f"| {entry.get('run', {}).get('verdict')} | {a.get('verdict')} |"
        )
    return rows


def render_results(data: dict[str, Any]) -> str:
    """The RESULTS.md section from the JSON this bench writes."""
    summary = data["summary"]
    which = [d for d in DETECTORS if any(d in e for e in summary.values())]
    head = "| family | runs | " + " | ".join(which) + " | target (ours) |"
    lines = [INTRO, "", head, "|" + "---|" * (len(which) + 3)]
    for name, e in summary.items():
        cells = " | ".join(_cell(name, e, d) for d in which)
        lines.append(f"| {name} | {e['runs']} | {cells} | {_verdict(name, e)} |")
    shaped = {n: e["target_shaped_runs"] for n, e in summary.items() if "target_shaped_runs" in e}
    if shaped:
        lines += ["", SHAPED_NOTE.format(
            pool=shaped.get("pool-steps", math.nan), daily=shaped.get("daily-no-load", math.nan)
        )]  # fmt: skip
    analysis, cli = data.get("analysis"), data.get("analyze_cli")
    if analysis and cli:
        lines.append("")
        lines.append(
            f"Analyse {analysis['samples']:,.0f} samples (48 h at 1/s): "
            f"{analysis['seconds']:.3f} s in detect_leak, {cli['seconds']:.3f} s for "
            "`vramguard analyze LOG --json` end to end (best of 3; target under 2 s)."
        )
    real = _real_rows()
    if real:
        lines += [
            "",
            "Real healthy processes, recorded side by side with `vramguard run --interval 10s` "
            "(`python bench/record_real.py --minutes 32 --out tests/data/real`; the logs are "
            "in tests/data/real/, and tests/test_real_traces.py replays them):",
            "",
            *real,
        ]
    return "\n".join(lines)


def seeded_parser(doc: str, runs: int) -> argparse.ArgumentParser:
    """The options every seeded detection bench takes: --runs, --seed, --workers, --json."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--runs", type=int, default=runs, help="seeds per family")
    parser.add_argument("--seed", type=int, default=0, help="first seed (0: the recorded)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default=None, help="write the figures here")
    return parser


def report(data: dict[str, Any], table: str, json_path: str | None) -> None:
    """Print a bench's table; write its figures where --json says."""
    print(table)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1)


def main() -> None:
    parser = seeded_parser(__doc__, 30)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--detectors", default=",".join(DETECTORS))
    parser.add_argument("--no-timing", action="store_true", help="skip the 48 h timing")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a DetectorConfig field for this run (exploring, not recorded)",
    )
    args = parser.parse_args()
    names = [n for n in args.families.split(",") if n]
    which = tuple(d for d in args.detectors.split(",") if d)
    unknown = [n for n in names if n not in FAMILIES] + [d for d in which if d not in DETECTORS]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
    overrides = {k: float(v) for k, _, v in (item.partition("=") for item in args.set)}
    config = replace(
        DetectorConfig(), **{k: type(getattr(DetectorConfig(), k))(v) for k, v in overrides.items()}
    )
    seeds = range(args.seed, args.seed + args.runs)
    jobs = [(name, seed, config, which) for name in names for seed in seeds]
    with ProcessPoolExecutor(args.workers) as pool:
        records = list(pool.map(run_one, jobs, chunksize=2))
    data: dict[str, Any] = {
        "command": "python bench/leak_detection.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in (("runs", args.runs), ("seed", args.seed))
        ),
        "runs": args.runs,
        "seed": args.seed,
        "summary": summarise(records, which),
    }
    if not args.no_timing:
        data["analysis"] = analysis_time()
        data["analyze_cli"] = cli_time()
    report(data, render_results(data), args.json)


if __name__ == "__main__":
    main()
