"""A reference for bench/leak_detection.py that knows the noise's model and a prior over its
parameters, but not the parameters: is the wander/mix95 trade-off the method's or the
information's?

White noise, white plus AR(1), the mixtures the mix95 targets are stated for, and slow
wander are all one model: white noise plus one mean-reverting (Ornstein-Uhlenbeck) part,
with three parameters (the white part's size, the wandering part's size, its time
constant). For such a series this reference computes, at every look (every `look_every_s`
from an hour of data after the first hour, the warm-up), the Bayes factor of "a leak
began at some time" against "no leak": the noise's parameters integrated over a grid with
a log-uniform prior (`Prior`), the level integrated with a flat prior, the leak's onset
uniform over every `onset_every_s` so far and its rate log-uniform over 3-60 MB/h. The
likelihood of every grid point comes from one Kalman filter over the series, which also
whitens the level and every onset's ramp column (the filter is linear and its gains do not
depend on the data), so each look costs a few sums. A run alarms at the first look whose
log Bayes factor exceeds a threshold; thresholds are swept, since this is the frontier of
what such a test can do, not a detector.

Three priors:
- `family`: the ranges the benchmark draws these families from (white 1-8 MB, the
  wandering part 2-10 MB, time constants of 4 min to 8 h): a test told how large a healthy
  process's wander can be, in MB.
- `ratio`: any scale (white 0.25-64 MB, wander 0.5-128 MB, time constants of 2 min to 48 h)
  but the wandering part 0.25-10 times the white part, as in the benchmark's draws.
- `scale-free`: the same wide ranges, no bound on the ratio: what a process's own history
  must then tell.

Healthy runs alarmed, and leak delay p50/p90 (from the leak's start to the first alarm at
or after it) with the runs alarmed before their leak; ours (LeakDetector as built) on the
same traces beside. Not a test: it asserts nothing.

    python bench/bayes_reference.py --runs 40 --seed 0 --json bench/bayes_reference.json
"""

from __future__ import annotations

import math
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from leak_detection import delay_figures, our_alarms, report, seeded_parser
from vramguard.scenarios import Scenario, draw
from vramguard.trend import DetectorConfig

HOUR = 3600.0
MB = 1e6
FAMILIES = ("white+ar", "wander", "white+leak10", "mix95+leak10", "mix95+leak5", "wander+leak5-40")
THRESHOLDS = (4.0, 5.0, 6.0, 8.0)
RATES_MB_H = np.geomspace(3.0, 60.0, 14)


def logsumexp(x: np.ndarray, axis: int | None = None) -> Any:
    """log(sum(exp(x))) without overflow; -inf where every term is -inf."""
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top
    return np.squeeze(out, axis=axis) if axis is not None else out.item()


@dataclass(frozen=True)
class Prior:
    """A log-uniform prior over white plus OU noise: (low, high, points) per parameter, and
    optionally the wandering part's size over the white part's kept within `ratio`."""

    name: str
    white_mb: tuple[float, float, int]
    wander_mb: tuple[float, float, int]
    tau_min: tuple[float, float, int]
    ratio: tuple[float, float] | None = None

    def grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """White sigma (MB), wander sigma (MB), tau (s) and log prior weight per point
        (points outside the ratio are left out)."""
        axes = [np.geomspace(*spec) for spec in (self.white_mb, self.wander_mb, self.tau_min)]
        white, wander, tau = (a.ravel() for a in np.meshgrid(*axes, indexing="ij"))
        keep = np.ones(len(white), dtype=bool)
        if self.ratio is not None:
            share = wander / white
            keep = (share >= self.ratio[0]) & (share <= self.ratio[1])
        weight = np.full(int(keep.sum()), -math.log(int(keep.sum())))
        return white[keep], wander[keep], tau[keep] * 60.0, weight


PRIORS = {
    p.name: p
    for p in (
        Prior("family", (1.0, 8.0, 5), (2.0, 10.0, 5), (4.0, 480.0, 12)),
        Prior("ratio", (0.25, 64.0, 8), (0.5, 128.0, 8), (2.0, 2880.0, 12), (0.25, 10.0)),
        Prior("scale-free", (0.25, 64.0, 8), (0.5, 128.0, 8), (2.0, 2880.0, 12)),
    )
}


def log_bayes_factors(
    t: np.ndarray,
    values: np.ndarray,
    prior: Prior,
    skip_s: float = HOUR,
    onset_every_s: float = 1800.0,
    look_every_s: float = 300.0,
) -> list[tuple[float, float]]:
    """(time, log Bayes factor of a ramp from some onset against none) at every look."""
    keep = t >= t[0] + skip_s
    t, y = t[keep], values[keep] / MB
    white, wander, tau_s, log_prior = prior.grid()
    onsets = np.arange(t[0], t[-1], onset_every_s)
    columns = 2 + len(onsets)  # the data, the level, one ramp per onset
    state = np.zeros((len(white), columns))
    var = wander**2
    logdet = np.zeros(len(white))
    yy, y1, one = (np.zeros(len(white)) for _ in range(3))
    yr, r1, rr = (np.zeros((len(white), len(onsets))) for _ in range(3))
    row = np.empty(columns)
    looks: list[tuple[float, float]] = []
    next_look = t[0] + HOUR
    for i in range(len(y)):
        if i:
            phi = np.exp(-(t[i] - t[i - 1]) / tau_s)
            state *= phi[:, None]
            var = phi * phi * var + wander**2 * (1 - phi * phi)
        spread = var + white**2
        row[0], row[1] = y[i], 1.0
        row[2:] = np.maximum(t[i] - onsets, 0.0) / HOUR
        innovation = row[None, :] - state
        state += (var / spread)[:, None] * innovation
        var = var * white**2 / spread
        logdet += np.log(spread)
        u = innovation / np.sqrt(spread)[:, None]  # whitened: data, level, ramps
        yy += u[:, 0] ** 2
        y1 += u[:, 0] * u[:, 1]
        one += u[:, 1] ** 2
        yr += u[:, :1] * u[:, 2:]
        r1 += u[:, 1:2] * u[:, 2:]
        rr += u[:, 2:] ** 2
        if t[i] < next_look:
            continue
        next_look += look_every_s
        # no leak: the level integrated (flat prior), per grid point
        null = log_prior - 0.5 * (logdet + yy - y1**2 / one + np.log(one))
        started = onsets <= t[i] - onset_every_s
        b = (yr - y1[:, None] * r1 / one[:, None])[:, started]
        c = (rr - r1**2 / one[:, None])[:, started]
        rate = RATES_MB_H[None, None, :]
        per_onset = logsumexp(rate * b[..., None] - 0.5 * rate**2 * c[..., None], axis=2)
        leak = logsumexp(per_onset, axis=1) - math.log(len(RATES_MB_H) * int(started.sum()))
        posterior = null - logsumexp(null)
        looks.append((float(t[i]), float(logsumexp(posterior + leak))))
    return looks


def first_above(looks: list[tuple[float, float]], threshold: float, after: float) -> float | None:
    return next((t for t, value in looks if value > threshold and t >= after), None)


def run_one(job: tuple[str, int, tuple[str, ...]]) -> dict[str, Any]:
    family, seed, priors = job
    trace: Scenario = draw(family, seed)
    start = trace.leak_start_t
    record: dict[str, Any] = {"family": family, "seed": seed, "leak_start_t": start}
    ours = our_alarms(trace, DetectorConfig())
    after = [a for a in ours if start is not None and a >= start]
    record["ours"] = {"first": ours[0] if ours else None, "after": after[0] if after else None}
    record["bayes"] = {}
    for name in priors:
        looks = log_bayes_factors(trace.t, trace.values, PRIORS[name])
        record["bayes"][name] = {
            f"{c:g}": {"first": first_above(looks, c, -math.inf),
                       "after": None if start is None else first_above(looks, c, start)}
            for c in THRESHOLDS
        }  # fmt: skip
    return record


def _cell(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Healthy: the share of runs alarmed. Leaking: delay p50/p90 (h), missed, early."""
    start = [r["leak_start_t"] for r in rows]
    if start[0] is None:
        return {"runs_alarmed": sum(r["cell"]["first"] is not None for r in rows) / len(rows)}
    delays = [math.inf if r["cell"]["after"] is None else (r["cell"]["after"] - s) / HOUR
              for r, s in zip(rows, start, strict=True)]  # fmt: skip
    figures = delay_figures(delays)
    return {
        "p50_h": _finite(figures["p50_h"]), "p90_h": _finite(figures["p90_h"]),
        "missed": figures["missed"],
        "early": sum(r["cell"]["first"] is not None and r["cell"]["first"] < s
                     for r, s in zip(rows, start, strict=True)) / len(rows),
    }  # fmt: skip


def _finite(hours: float) -> float | None:
    """None for never: JSON has no infinity."""
    return None if math.isinf(hours) else hours


def summarise(records: list[dict[str, Any]], priors: tuple[str, ...]) -> dict[str, Any]:
    ways = ["ours"] + [f"{p} > {c:g}" for p in priors for c in THRESHOLDS]
    out: dict[str, Any] = {}
    for way in ways:
        name, _, c = way.partition(" > ")
        out[way] = {}
        for family in dict.fromkeys(r["family"] for r in records):
            rows = [{"leak_start_t": r["leak_start_t"],
                     "cell": r["bayes"][name][c] if c else r[name]}
                    for r in records if r["family"] == family]  # fmt: skip
            out[way][family] = _cell(rows)
    return out


def _h(hours: float | None) -> str:
    return "never" if hours is None else f"{hours:.2f} h"


def render(data: dict[str, Any]) -> str:
    families = list(next(iter(data["summary"].values())))
    lines = [
        "| test | " + " | ".join(families) + " |",
        "|---|" + "---|" * len(families),
    ]
    for way, cells in data["summary"].items():
        shown = []
        for family in families:
            e = cells[family]
            if "runs_alarmed" in e:
                shown.append(f"{e['runs_alarmed']:.0%} alarmed")
            else:
                missed = f", missed {e['missed']:.0%}" if e["missed"] else ""
                shown.append(f"{_h(e['p50_h'])} / {_h(e['p90_h'])}{missed}, early {e['early']:.0%}")
        prior, _, threshold = way.partition(" > ")
        label = f"Bayes, {prior} prior, log BF > {threshold}" if threshold else way
        lines.append(f"| {label} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = seeded_parser(__doc__, 40)
    parser.add_argument("--priors", default=",".join(PRIORS), help="comma-separated")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated")
    args = parser.parse_args()
    priors = tuple(args.priors.split(","))
    families = args.families.split(",")
    jobs = [(f, s, priors) for f in families for s in range(args.seed, args.seed + args.runs)]
    records = []
    with ProcessPoolExecutor(args.workers) as pool:
        for record in pool.map(run_one, jobs, chunksize=1):
            records.append(record)
            print(f"{len(records)}/{len(jobs)} {record['family']} seed {record['seed']}",
                  file=sys.stderr, flush=True)  # fmt: skip
    command = f"python bench/bayes_reference.py --runs {args.runs} --seed {args.seed}"
    if args.priors != ",".join(PRIORS):
        command += f" --priors {args.priors}"
    if args.families != ",".join(FAMILIES):
        command += f" --families {args.families}"
    data = {"command": command, "summary": summarise(records, priors), "runs": records}
    report(data, render(data), args.json)


if __name__ == "__main__":
    main()
