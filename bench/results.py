"""bench/RESULTS.md, rendered from the JSON files the benches write.

    python bench/results.py            # rewrite bench/RESULTS.md from bench/*.json
    python bench/results.py --check    # exit 1 when bench/RESULTS.md differs from that

One renderer per section. Each reads only the JSON that the command it shows writes, and
every figure in its text comes from that JSON; where a figure has no such file the text
says so and gives the command that would make one. Unfavourable columns (growth, verdict,
missed criteria, faults) stay beside the favourable ones. The bench scripts print their
tables with these same functions.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

MB = 1e6
BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "RESULTS.md"

HEADER = """# Benchmark results

Figures measured on this project's machine (2 cores, 24 GiB, no GPU, Python 3.11, PyAV 18.1 /
FFmpeg 8), with the command beside each. The machine is shared and noisy: compare the
columns of one run, and read ratios rather than absolute times.

This file is generated: `python bench/results.py` renders it from the JSON files in bench/
(each written by the command shown beside its table); edit the renderers, not this file.
`python bench/results.py --check` says whether it is up to date."""


def load(name: str) -> dict[str, Any]:
    with open(BENCH / name, encoding="utf-8") as file:
        data: dict[str, Any] = json.load(file)
    return data


def _ms(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f} ms"


def _mb(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value / MB:+.0f} MB" if sign else f"{value / MB:.0f} MB"


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _code(command: str) -> str:
    return f"```\n{command}\n```"


# -- leak detection (bench/leak_detection.py, the lead's renderer) --------------------------


def leak_section(previous: str) -> str:
    """The leak-detection section: bench/leak_detection.py's own `render_results` over its
    JSON once both exist in their new shape; until then the section as it stands."""
    try:
        sys.path.insert(0, str(BENCH))
        import leak_detection

        data = load("leak_detection.json")
        render: Callable[[dict[str, Any]], str] | None = getattr(
            leak_detection, "render_results", None
        )
    except Exception:  # the bench mid-rewrite: keep what RESULTS.md says
        render, data = None, {}
    if render is None or "command" not in data:
        return _section(previous, "## Leak detection")
    return "\n\n".join([
        "## Leak detection (`bench/leak_detection.py`)",
        _code(f"{data['command']} --json bench/leak_detection.json"),
        render(data),
    ])  # fmt: skip


def _section(text: str, heading: str) -> str:
    """The section of `text` that starts with `heading`, up to the next `## `."""
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)].strip()


# -- staging (bench/staging.py) -------------------------------------------------------------


def staging_tables(data: dict[str, Any]) -> str:
    lines = ["| input | cost per frame | fps | peak RSS |", "|---|---|---|---|"]
    names = {
        "new-frame": "a new frame per frame (`from_ndarray`)",
        "pool": "staging pool (pooled frame, fence from the session)",
    }
    for r in data["encode"]:
        lines.append(
            f"| {names.get(r['mode'], r['mode'])} | {r['input_ms_per_frame']:.3f} ms "
            f"| {r['fps']:.0f} | {_mb(r['peak_rss_bytes'])} |"
        )
    lines += ["", "| heap | RSS after 1st cycle | RSS after last | growth |", "|---|---|---|---|"]
    for c in data["cycles"]:
        heap = "`trim_heap()` after close" if c["trim"] else "left to glibc"
        first, last = c["rss_after_first_bytes"], c["rss_after_last_bytes"]
        lines.append(f"| {heap} | {_mb(first)} | {_mb(last)} | {_mb(last - first, True)} |")
    return "\n".join(lines)


def staging_section(data: dict[str, Any]) -> str:
    new, pool = (next(r for r in data["encode"] if r["mode"] == m) for m in ("new-frame", "pool"))
    kept, trimmed = (next(c for c in data["cycles"] if c["trim"] is t) for t in (False, True))
    frames, cycles = new["frames"], kept["cycles"]
    ratio = new["input_ms_per_frame"] / pool["input_ms_per_frame"]
    growth_kept = kept["rss_after_last_bytes"] - kept["rss_after_first_bytes"]
    growth_trim = trimmed["rss_after_last_bytes"] - trimmed["rss_after_first_bytes"]
    met = "met" if pool["input_ms_per_frame"] <= 0.1 else "**missed**"
    met_trim = "met" if growth_trim <= 50 * MB else "**missed**"
    return "\n\n".join([
        "## Staging buffers and heap retention (`bench/staging.py`)",
        _code(f"python bench/staging.py --frames {frames} --cycles {cycles} "
              "--json bench/staging.json"),
        f"{frames} frames of 1920x1080 into libx264 (ultrafast, zerolatency, 8000 kbps), the "
        f"source drawing a moving pattern, and {cycles} SVT-AV1 1080p session cycles (open, 5 "
        "frames, close); each mode in its own process:",
        staging_tables(data),
        f"Pooled input costs 1/{ratio:.0f} of a new frame and the encode loop runs "
        f"{pool['fps'] / new['fps']:.2f}x faster. Target, at most 0.1 ms a frame: {met} "
        f"({pool['input_ms_per_frame']:.3f} ms). Target, RSS within 50 MB of its level after "
        f"the first cycle with trimming: {met_trim} ({_mb(growth_trim, True)}). Without "
        f"trimming the same work keeps {_mb(growth_kept)} of freed heap: no leak, but RSS says "
        "otherwise, which is why samples carry `heap_free_bytes`.",
    ])  # fmt: skip


# -- the soak (bench/soak.py, bench/svtav1_sessions.py) -------------------------------------

LOOPS = {  # speed_fps keys: loop names as bench/soak.py wrote them over time
    "soak": "`vramguard soak`, drawing ahead",  # before the prefetch flags, prefetch was on
    "soak_prefetch": "`vramguard soak`, drawing ahead",
    "soak_no_prefetch": "`vramguard soak`, drawing on the encoding thread",
    "bare_pyav": "bare PyAV loop (one reused frame, same source and options)",
    "ffmpeg_cli": "`ffmpeg -f lavfi -i testsrc2 ... -f null -` (Debian's ffmpeg)",
}


def speed_table(data: dict[str, Any]) -> str:
    """Speed per loop and source, with medians of the per-round ratios."""
    rounds: dict[str, list[float]] = data["speed_rounds"]
    cli = rounds.get("ffmpeg_cli testsrc2")
    lines = [
        "| loop | source | fps (median) | each round | vs bare PyAV, same source | vs ffmpeg CLI |",
        "|---|---|---|---|---|---|",
    ]
    for name, values in rounds.items():
        loop, _, source = name.partition(" ")
        bare = rounds.get(f"bare_pyav {source}")
        versus_bare = (
            f"{_median([a / b for a, b in zip(values, bare, strict=True)]):.2f}" if bare else "n/a"
        )
        versus_cli = (
            f"{_median([a / b for a, b in zip(values, cli, strict=True)]):.2f}" if cli else "n/a"
        )
        each = " ".join(f"{v:.0f}" for v in values)
        lines.append(
            f"| {LOOPS.get(loop, loop)} | {source} | {_median(values):.0f} | {each} "
            f"| {versus_bare} | {versus_cli} |"
        )
    return "\n".join(lines)


def speed_verdicts(data: dict[str, Any]) -> str:
    """The speed targets on testsrc2, per soak loop, from the per-round ratios."""
    rounds: dict[str, list[float]] = data["speed_rounds"]
    cli, bare = rounds.get("ffmpeg_cli testsrc2"), rounds.get("bare_pyav testsrc2")
    if not cli or not bare:
        return "This run has no ffmpeg or bare-loop rounds on testsrc2 to judge against."
    said = []
    for name, values in rounds.items():
        loop, _, source = name.partition(" ")
        if source != "testsrc2" or not loop.startswith("soak"):
            continue
        to_cli = _median([a / b for a, b in zip(values, cli, strict=True)])
        to_bare = _median([a / b for a, b in zip(values, bare, strict=True)])
        said.append(
            f"{LOOPS.get(loop, loop)}: {to_cli:.2f} of ffmpeg "
            f"({'met' if to_cli >= 1.0 else '**missed**'}), {to_bare:.2f} of bare PyAV "
            f"({'met' if to_bare >= 0.95 else '**missed**'})"
        )
    return "On testsrc2, " + "; ".join(said) + "."


_SHORT = {
    "peak memory": "peak",
    "growth per hour": "growth",
    "session reuse": "reuse",
    "frames dropped for memory": "drops",
    "reference frames": "references",
    "run completed": "failure",
}


def _verdict(run: dict[str, Any]) -> str:
    missed = [_SHORT.get(c["name"], c["name"]) for c in run["criteria"] if not c["passed"]]
    return run["verdict"] + (f" ({', '.join(missed)})" if missed else "")


def _faults(run: dict[str, Any]) -> str:
    if "faults" not in run:
        return "not recorded"
    count = sum(f.get("count", 1) for f in (run["faults"] or {}).values())
    failure = run.get("failure")
    return (f"{count}" if count else "0") + (f"; ended: {failure}" if failure else "")


def svtav1_table(data: dict[str, Any]) -> str:
    growth: dict[str, list[float]] = data["memory_growth_bytes"]
    fps: dict[str, list[float]] = data["fps"]
    lines = [
        "| lp | RSS after " + " / ".join(str(i + 1) for i in range(len(growth["default"])))
        + " sessions | per session | fps of one (each round) |",
        "|---|---|---|---|",
    ]  # fmt: skip
    for name, values in growth.items():
        each = " / ".join(f"+{g / MB:.0f}" for g in values)
        rounds = " ".join(f"{f:.0f}" for f in fps[name])
        lines.append(f"| {name} | {each} MB | {values[-1] / len(values) / MB:.0f} MB | {rounds} |")
    return "\n".join(lines)


def soak_runs_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """Managed and baseline runs: every column the judgement used, pass or fail."""
    lines = [
        "| codec | run | peak RSS | growth (95% CI) | after teardown | reuse | sessions "
        "| dropped | faults | verdict (missed) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in rows:
        ci = r.get("growth_ci_bytes_per_hour")
        growth = r.get("growth_bytes_per_hour")
        shown = "n/a" if growth is None else f"{growth / MB:+.1f} MB/h"
        if ci:
            shown += f" ({ci[0] / MB:.1f}, {ci[1] / MB:.1f})"
        reuse = r.get("session_reuse_rate")
        lines.append(
            f"| {r['codec']} {r['resolution']} | {label} | {_mb(r['peak_bytes'])} | {shown} "
            f"| {_mb(r.get('after_teardown_bytes'))} "
            f"| {'n/a' if reuse is None else f'{reuse:.1%}'} | {r['sessions_created']} "
            f"| {r['frames_dropped_memory']} | {_faults(r)} | {_verdict(r)} |"
        )
    return "\n".join(lines)


def _label(run: dict[str, Any], managed: str = "managed") -> str:
    return "baseline" if run.get("baseline") else managed


def soak_section(speed: dict[str, Any], svt: dict[str, Any]) -> str:
    rounds = speed["speed_rounds"]
    n_rounds = len(next(iter(rounds.values())))
    svt_growth = svt["memory_growth_bytes"]
    per_session = {k: v[-1] / len(v) for k, v in svt_growth.items()}
    lp_ratio = _median(
        [a / b for a, b in zip(svt["fps"]["lp=1"], svt["fps"]["default"], strict=True)]
    )
    return "\n\n".join([
        "## The soak (`bench/soak.py`)",
        "Speed, 1800 frames of 1920x1080 H.264 at 60 fps, libx264 ultrafast/zerolatency, CBR "
        f"5000 kbps, GOP 2 s, no B-frames, 3 references; {n_rounds} interleaved rounds, each "
        "loop its own process. Ratios are medians of the per-round ratios: compare within a "
        "round, the machine's load comes and goes. \"Drawing ahead\" is the prefetcher (the "
        "source draws the next frames on a thread of its own); this run was made when it was "
        "on for both sources, so its JSON calls that loop `soak` (now `soak_prefetch`).",
        _code(f"python bench/soak.py --frames 1800 --speed-only --rounds {n_rounds} "
              "--json bench/soak_speed.json"),
        speed_table(speed),
        "Targets: the soak at least as fast as the ffmpeg command line, and at least 0.95 of "
        "the bare PyAV loop, on equal content (testsrc2; the synthetic source moves every "
        "pixel every frame and is not comparable with testsrc2). "
        + speed_verdicts(speed)
        + " An earlier run (before the prefetcher) gave soak/bare 1.03 on the "
        "synthetic source and 0.95 on testsrc2: no stored output, not reproducible from a "
        "file; rerun the command above.",
        "Managed against `--baseline` (memory, sessions opened, keyframes, reuse, rate per "
        "rung): see \"Adapting in place\" below, measured with today's pool. The runs kept "
        "here before (bench/soak_5m.json, soak_20m_h264.json, soak_20m.json, "
        "soak_20m_lp1.json: a warm session per ladder rung, managed peaks of 246-398 MB "
        "against baselines of 127-188 MB, two of them merged by hand) described a pool that "
        "no longer exists, so the command beside them no longer gives them; they are in git "
        "history (bench/RESULTS.md at commit 9dd4367).",
        "What one warm 1080p SVT-AV1 session holds, and what its level of parallelism trades "
        "(2 cores):",
        _code("python bench/svtav1_sessions.py --json bench/svtav1_sessions.json"),
        svtav1_table(svt),
        f"`lp=1` holds {1 - per_session['lp=1'] / per_session['default']:.0%} less per "
        f"session; its fps over the default, median of per-round ratios: {lp_ratio:.2f} "
        f"({len(svt['fps']['default'])} rounds on a loaded machine). SVT-AV1 does not "
        "change bitrate in place (PyAV 18): the pool keeps a warm session for it only within "
        "its idle-memory budget.",
    ])  # fmt: skip


# -- encoder sessions (bench/sessions.py) ---------------------------------------------------


def sessions_tables(data: dict[str, Any]) -> str:
    """The tables of bench/sessions.py: equal-work starts, and the ladder."""
    lines = [
        f"Starting a client's stream at {data['resolution']}, median of {data['repeats']} "
        "interleaved repeats. Both columns do the same work: encode the same frame to its "
        "first packet, a keyframe; cold opens a new encoder first, warm acquires a released "
        'one from the pool. "Acquire alone" is the pool\'s bookkeeping, for reference; it '
        "is not the speed-up.",
        "",
        "| codec | encoder | cold: open + 1st packet | warm: acquire + 1st packet | speed-up "
        "| speed-up, each repeat | acquire alone | keyframes, cold/warm | rebuild at a new "
        "rate | in place |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for codec, t in data["timings"].items():
        keys = t["keyframes_first_packet"]
        each = " ".join(f"{x:.1f}" for x in t["speedup_per_repeat"])
        in_place = "not supported" if t["in_place_ms"] is None else _ms(t["in_place_ms"], 3)
        lines.append(
            f"| {codec} | {t['encoder']} | {_ms(t['cold_open_first_packet_ms'])} "
            f"| {_ms(t['warm_acquire_first_packet_ms'])} | {t['warm_speedup']:.1f}x | {each} "
            f"| {_ms(t['acquire_only_ms'], 3)} | {keys['cold']}/{keys['warm']} of {t['repeats']} "
            f"| {_ms(t['rebuild_ms'])} | {in_place} |"
        )
    lines += [
        "",
        f"{data['changes']} bitrate changes over {'/'.join(map(str, data['ladder_kbps']))} "
        "kbps, a reconnect every 4th change, 3 frames each, each run its own process. "
        '"RSS after teardown" is with every session closed and the heap left to glibc; '
        '"after trim" is the same process after `trim_heap()` (both modes alike; the '
        "pool's own trim-on-close is off here):",
        "",
        "| codec | mode | sessions created | reuse | time | RSS at start | RSS after teardown "
        "| after trim |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in data["ladder"]:
        lines.append(
            f"| {r['codec']} | {r['mode']} | {r['created']} | {r['reuse_rate']:.1%} "
            f"| {r['seconds']:.1f} s | {_mb(r['rss_start_bytes'])} "
            f"| {_mb(r['rss_after_bytes'])} | {_mb(r['rss_after_trim_bytes'])} |"
        )
    return "\n".join(lines)


def in_place_note(data: dict[str, Any]) -> str:
    """Which encoders changed rate in place in this run, and which kept their opening rate."""
    kept = [t["encoder"] for t in data["timings"].values() if t["in_place_ms"] is None]
    moved = [
        f"{t['encoder']} ({_ms(t['in_place_ms'], 3)})"
        for t in data["timings"].values()
        if t["in_place_ms"] is not None
    ]
    said = []
    if kept:
        said.append(
            f'"Not supported": {", ".join(kept)} returned False from `set_bitrate` in this '
            "run (they keep their opening rate when `bit_rate` changes), so the pool keeps a "
            "warm session per rate instead."
        )
    if moved:
        said.append(f"Changed in place: {', '.join(moved)}.")
    return " ".join(said)


def _span(low: float, high: float) -> str:
    return f"{low:.1f}x" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}x to {high:.1f}x"


def sessions_section(data: dict[str, Any]) -> str:
    speedups = {c: t["warm_speedup"] for c, t in data["timings"].items()}
    low, high = min(speedups.values()), max(speedups.values())
    pooled = [r for r in data["ladder"] if r["mode"] == "pool"]
    reuse = min(r["reuse_rate"] for r in pooled)
    met_reuse = "met" if reuse >= 0.85 else "**missed**"
    met_speed = "met" if low >= 100 else "**missed**"
    by = {(r["codec"], r["mode"]): r for r in data["ladder"]}
    rss = "; ".join(
        f"{codec} {_mb(by[codec, 'pool']['rss_after_bytes'])} pooled against "
        f"{_mb(by[codec, 'always-new']['rss_after_bytes'])} always-new "
        f"({_mb(by[codec, 'pool']['rss_after_trim_bytes'])} against "
        f"{_mb(by[codec, 'always-new']['rss_after_trim_bytes'])} trimmed)"
        for codec in data["timings"]
        if (codec, "pool") in by and (codec, "always-new") in by
    )
    not_key = [
        f"{codec} ({t['encoder']}): the warm first packet was a keyframe in "
        f"{t['keyframes_first_packet']['warm']} of {t['repeats']} repeats"
        for codec, t in data["timings"].items()
        if t["keyframes_first_packet"]["warm"] < t["repeats"]
    ]
    keyframes = (
        "**Not equal work everywhere:** "
        + "; ".join(not_key)
        + ". The pool forces a keyframe on a reused session, and libx265 turns a forced "
        "keyframe into an IDR only with `forced-idr=1` (checked with PyAV 18.1: without it "
        "the forced frame is not flagged key); so a new client on a reused HEVC session "
        "does not start on a keyframe, and that row's warm column did less work than the "
        "cold one."
        if not_key
        else "Every first packet, cold and warm, was a keyframe."
    )
    return "\n\n".join([
        "## Encoder sessions (`bench/sessions.py`)",
        _code(f"python bench/sessions.py --resolution {data['resolution']} --repeats "
              f"{data['repeats']} --changes {data['changes']} --json bench/sessions.json"),
        sessions_tables(data),
        f"Warm against cold on equal work: {_span(low, high)}. The target, a warm start "
        f"at least 100 times faster than a cold open plus first packet, is {met_speed} on "
        "equal work: the pool saves the encoder's open and its first-frame setup, not the "
        "encode of the first frame, which both sides pay. An earlier version of this table "
        "compared a cold open plus first packet with the acquire alone and reported 239x to "
        "1779x; that was unequal work and is withdrawn.",
        keyframes,
        f"Reuse at least 85% under the ladder with reconnects: {met_reuse} "
        f"({reuse:.1%}; sessions opened by the pool: "
        + ", ".join(f"{r['codec']} {r['created']}" for r in pooled)
        + "). RSS after teardown, the same trimming on "
        f"both sides: {rss}.",
        in_place_note(data),
        "The hardware encoders that change rate in place by FFmpeg's source (nvenc, qsv, "
        "amf) cannot run here: their `set_bitrate` path is unmeasured.",
    ])  # fmt: skip


# -- reference frames (bench/references.py) -------------------------------------------------


def references_table(data: dict[str, Any]) -> str:
    """The table of bench/references.py: heap per reference, measured against the model."""
    model = data["model_bytes_per_reference"]
    refs = data["refs"]
    lines = [
        f"| codec | encoder | heap growth at {' / '.join(map(str, refs))} references "
        "(median of rounds) | measured per reference (heap) | per reference (RSS) "
        "| modelled per reference | measured / modelled |",
        "|---|---|---|---|---|---|---|",
    ]
    for codec, c in data["per_codec"].items():
        growth = []
        for n in refs:
            values = [
                r["heap_in_use_growth_bytes"]
                for r in data["runs"]
                if r["codec"] == codec and r["refs"] == n and r["heap_in_use_growth_bytes"]
            ]
            growth.append(f"{_median(values) / MB:.0f}" if values else "n/a")
        heap = c["heap_bytes_per_reference"]
        ratio = "n/a" if heap is None else f"{heap / model:.2f}"
        shown = "n/a" if heap is None else f"{heap / MB:.2f} MB"
        lines.append(
            f"| {codec} | {c['encoder']} | {' / '.join(growth)} MB | {shown} "
            f"| {c['rss_bytes_per_reference'] / MB:.2f} MB | {model / MB:.2f} MB | {ratio} |"
        )
    return "\n".join(lines)


def references_section(data: dict[str, Any]) -> str:
    return "\n\n".join([
        "## Reference frames, modelled and measured (`bench/references.py`)",
        _code(f"python bench/references.py --resolution {data['resolution']} --frames "
              f"{data['frames']} --rounds {data['rounds']} --refs "
              f"{','.join(map(str, data['refs']))} --json bench/references.json"),
        "The soak's \"reference frames\" criterion is modelled (references held x padded "
        "frame size, from the reference policy) and says so beside its value: no probe sees "
        "an encoder's decoded picture buffer. Here the heap is measured instead: sessions "
        f"at {data['resolution']} that differ only in their reference count (no B-frames, "
        f"no lookahead, no keyframe in {data['frames']} frames of moving content), each in "
        "its own process; the slope of glibc heap in use over the reference count is what "
        "one reference costs.",
        references_table(data),
        "Where measured exceeds modelled, the criterion bounds the references the policy "
        "lets the encoder keep, not the bytes the encoder allocates for each.",
    ])  # fmt: skip


# -- adapting in place (bench/soak.py side by side, bench/adapt.py) ------------------------


def _side_by_side_rows(data: dict[str, Any]) -> list[str]:
    minutes = data["stream_s"] / 60
    rows = []
    for row in data.get("side_by_side", []):
        for kind in ("managed", "baseline"):
            r = row[kind]
            growth = r.get("growth_bytes_per_hour")
            shown = "not judged" if growth is None else f"{growth / MB:+.1f} MB/h"
            errors = "/".join(f"{100 * e:+.1f}%" for e in r.get("rung_error", {}).values())
            missed = ", ".join(r.get("missed") or []) or "-"
            rows.append(
                f"| {row['codec']} {row['resolution']}, {minutes:.0f} min | {kind} | "
                f"{_mb(r['peak_bytes'])} | {_mb(r['after_teardown_bytes'])} | "
                f"{r['sessions_opened']} of {r['requests']} | {r['reuse']:.1%} | "
                f"{r['rate_change_keyframes']} | {errors} | {shown} | {r['verdict']} "
                f"({missed}) |"
            )
    return rows


def adapt_section(
    twentys: list[dict[str, Any]], five: dict[str, Any], adapt: dict[str, Any]
) -> str:
    head = [
        "| run | pipeline | peak RSS | after teardown | sessions opened | reuse | "
        "keyframes from rate changes | rate error per rung (2000/3500/5000/8000) | growth | "
        "verdict (missed) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ratios = ", ".join(
        f"{r['codec']} {r['resolution']} {r['peak_ratio']:.2f} ({d['stream_s'] / 60:.0f} min)"
        for d in (*twentys, five) for r in d.get("side_by_side", [])
    )  # fmt: skip
    twenty_rows = [row for d in twentys for row in _side_by_side_rows(d)]
    in_place = five.get("h264_in_place", {})
    psnr = ["| asked | in place | fresh session | PSNR in place - fresh |", "|---|---|---|---|"]
    for rung in in_place.get("rungs", []):
        psnr.append(
            f"| {rung['asked_kbps']} kbps | {rung['in_place_kbps']:.0f} kbps | "
            f"{rung['fresh_kbps']:.0f} kbps | {rung['psnr_delta_db']:+.2f} dB |"
        )
    changed = [
        "| encoder | set_bitrate | kbps before | kbps after the change |",
        "|---|---|---|---|",
    ]
    for row in adapt.get("in_place", []):
        changed.append(
            f"| {row['encoder']} | {row['set_bitrate']} | {row['kbps_before']:.0f} | "
            f"{row['kbps_after']:.0f} |"
        )
    return "\n\n".join([
        "## Adapting in place: one session per client (`bench/soak.py`, `bench/adapt.py`)",
        _code("\n".join(d["command"] for d in (*twentys, five))
              + "\npython bench/adapt.py --skip quality --json bench/adapt.json"),
        "Managed against baseline on testsrc2, ladder 2000/3500/5000/8000 kbps every 30 s, "
        "reconnect every 2 min. Peak RSS managed / baseline: " + ratios + " (target: at or "
        "under the baseline's, within 10%; AV1 1080p under 300 MB). Reuse counts in-place "
        "rate changes as served warm; the first open of a client can never be reused.",
        "\n".join(head + twenty_rows + _side_by_side_rows(five)),
        "H.264 in place against a fresh session at the same rate "
        f"({in_place.get('rung_s', 'n/a')} s rungs, "
        f"{in_place.get('keyframes_after_rate_change', 'n/a')} keyframes after a rate change):",
        "\n".join(psnr),
        "Which encoders change rate in place (a new bit_rate after open, measured):",
        "\n".join(changed),
    ])  # fmt: skip


# -- aiortc (bench/aiortc_loopback.py) ------------------------------------------------------


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or not b else f"{a / b:.2f}"


def _mb_or_none(value: float | None) -> float | None:
    return None if value is None else value / MB


#: the rows of the aiortc table: (what, how to read it from a run, format)
AIORTC_ROWS: list[tuple[str, Callable[[dict[str, Any]], float | None], str]] = [
    ("encoder contexts opened", lambda r: r["contexts_opened"], "d"),
    ("contexts opened per minute", lambda r: r["contexts_per_minute"], ".1f"),
    ("rate changes (target moved)", lambda r: r["rate_changes"], "d"),
    ("keyframes (IDR frames sent)", lambda r: r["keyframes"], "d"),
    ("keyframes the receiver asked for", lambda r: r["keyframes_asked"], "d"),
    ("RSS at minute {from_min}, MB", lambda r: _mb_or_none(r["rss_from_bytes"]), ".1f"),
    ("RSS at the end, MB", lambda r: _mb_or_none(r["rss_end_bytes"]), ".1f"),
    ("RSS growth, end - minute {from_min}, MB",
     lambda r: _mb_or_none(r["rss_end_bytes"] - r["rss_from_bytes"]), "+.1f"),
    ("RSS growth fitted from minute {from_min}, MB/h",
     lambda r: _mb_or_none(r["rss_growth_bytes_per_hour"]), "+.0f"),
    ("frames a second (the source's 30 when the machine keeps up)",
     lambda r: r["rate"].get("frames_per_second"), ".1f"),
    ("bits a second / target, settled seconds (median)",
     lambda r: r["rate"]["median_ratio"], ".3f"),
    ("bits a second / target, whole run", lambda r: r["rate"]["sent_over_target"], ".3f"),
    ("bits a frame / (target / 30), settled seconds (median)",
     lambda r: r["rate"].get("per_frame_median_ratio"), ".3f"),
    ("settled seconds within 10% of the target, a frame",
     lambda r: r["rate"].get("per_frame_within_10pct_share"), ".0%"),
    ("bits a frame / (target / 30), whole run",
     lambda r: r["rate"].get("per_frame_sent_over_target"), ".3f"),
    ("frames sent", lambda r: r["frames_sent"], "d"),
    ("frames received (decoded)", lambda r: r["frames_received"], "d"),
    ("process CPU per frame, ms", lambda r: r["cpu_per_frame_ms"], ".1f"),
]  # fmt: skip


def aiortc_table(data: dict[str, Any]) -> str:
    """Stock aiortc against vramguard's encoder, per schedule: a row per measure."""
    blocks = []
    for schedule, runs in data["schedules"].items():
        stock, ours = runs["stock"], runs["vramguard"]
        from_min = f"{stock['rss_from_t'] / 60:.3g}"
        lines = [
            f"{schedule} ({stock['duration_s'] / 60:.1f} min each, both at once):",
            "",
            "| | stock aiortc | aiortc + vramguard | vramguard / stock |",
            "|---|---|---|---|",
        ]
        for name, key, fmt in AIORTC_ROWS:
            a, b = key(stock), key(ours)
            lines.append(f"| {name.format(from_min=from_min)} | {_num(a, fmt)} "
                         f"| {_num(b, fmt)} | {_ratio(b, a)} |")  # fmt: skip
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def aiortc_encode_table(data: dict[str, Any]) -> str:
    """CPU per frame of the two encoders alone, round by round."""
    part = data["encode_only"]
    cost, opened = part["cpu_per_frame_ms"], part["contexts_opened"]
    lines = [
        f"The encoders alone, {part['frames']} frames of 1280x720 a round, the random "
        "schedule's rate every 5 s of frames:",
        "",
        "| round | stock aiortc | aiortc + vramguard | vramguard / stock |",
        "|---|---|---|---|",
    ]
    for i, (a, b) in enumerate(zip(cost["stock"], cost["vramguard"], strict=True)):
        lines.append(f"| {i + 1} | {a:.1f} ms ({opened['stock'][i]} contexts) "
                     f"| {b:.1f} ms ({opened['vramguard'][i]}) | {b / a:.2f} |")  # fmt: skip
    lines.append(f"| median of the ratios | | | {part['median_ratio']:.2f} |")
    return "\n".join(lines)


def aiortc_section(runs: list[dict[str, Any]]) -> str:
    head = "## aiortc: stock against vramguard's encoder (`bench/aiortc_loopback.py`)"
    if not runs:
        command = "python bench/aiortc_loopback.py --minutes 10 --json bench/aiortc_10m.json"
        return "\n\n".join([head, "No run recorded yet; this command makes one:", _code(command)])
    blocks = [
        head,
        "A loopback WebRTC session in one process (two RTCPeerConnections over the host's own "
        "addresses), 1280x720 at 30 fps of moving pictures, H.264: aiortc's own encoder "
        "against `vramguard.integrations.aiortc` (libx264 with aiortc's settings, rate changed "
        "in place). The two variants of a schedule run at once, a process each, on a shared "
        "2-core machine: read the ratios; the load averages at start and end are in the JSON. "
        "`remb`: the rate follows the receiver's REMB; `random`: a rate between 0.5 and 3 Mbps "
        "every 5 s, REMB ignored. CPU per frame is the whole process (sender and receiver).",
    ]
    for data in runs:
        table = aiortc_encode_table if "encode_only" in data else aiortc_table
        start, end = data["load_average_at_start"][0], data["load_average_at_end"][0]
        blocks += [
            _code(data["command"]),
            f"Load average (1 min) {start:.1f} at the start, {end:.1f} at the end, on "
            f"{data['cpus']} cores.",
            table(data),
        ]
    return "\n\n".join(blocks)


# -- history (bench/history.py renders its own section) ------------------------------------


def history_section(data: dict[str, Any]) -> str:
    sys.path.insert(0, str(BENCH))
    import history

    return str(history.render_results(data))


# -- the noise prior (bench/noise_prior.py) ---------------------------------------------------


def _rendered_by(module: str, heading: str, lead: str, data: dict[str, Any]) -> str:
    """A section whose table the bench module `module` renders (as it prints it), under
    the command that wrote `data` (bench/<module>.json)."""
    sys.path.insert(0, str(BENCH))
    bench = importlib.import_module(module)
    return "\n\n".join([
        f"## {heading} (`bench/{module}.py`)",
        lead,
        _code(f"{data['command']} --json bench/{module}.json"),
        str(bench.render(data)),
    ])  # fmt: skip


def noise_prior_section(data: dict[str, Any]) -> str:
    return _rendered_by(
        "noise_prior",
        "A noise prior from an earlier run",
        "Each process run twice: a family's 60 h trace split into an earlier day and 36 h "
        "judged on their own, healthy and with 10 MB/h from a random hour 4-20 h into them; "
        "ours alone, ours given the earlier day's noise (`analyze/run/watch --noise-from`), "
        "and the exact-noise reference (bench/exact_noise.py).",
        data,
    )


# -- the Bayes reference (bench/bayes_reference.py) -----------------------------------------


def bayes_reference_section(data: dict[str, Any]) -> str:
    return _rendered_by(
        "bayes_reference",
        "What knowing the noise's ranges is worth",
        "The Bayes factor of a leak against none, for families whose noise is white plus "
        "one mean-reverting part, with that model known and its parameters integrated over "
        "a prior: the benchmark's own ranges (`family`), any scale with the benchmark's "
        "ratio of wander to white (`ratio`), or any scale and ratio (`scale-free`); a run "
        "alarms at the first look (every 5 min) above the threshold. Healthy runs alarmed; "
        "leaks as delay p50 / p90 from the leak's start, the runs missed, and the runs "
        "alarmed before their leak. Ours is LeakDetector as built, on the same traces.",
        data,
    )


# -- the node agent (bench/agent.py) --------------------------------------------------------


def agent_point(point: dict[str, Any]) -> str:
    """One minute of the agent, as bench/agent.py prints it while it runs."""
    return (
        f"{point['t_s'] / 60:5.1f} min: cpu {100 * point['cpu_share']:.2f}% of a core, "
        f"rss {_mb(point['rss_bytes'])}, tracked {point['tracked']}, pass "
        f"{point['sample_seconds']} s, flagged {point['flagged_leaking']} leaking + "
        f"{point['flagged_healthy']} healthy"
    )


def _agent_summary(points: list[dict[str, Any]]) -> dict[str, float]:
    half = len(points) // 2
    first, second = points[:half] or points, points[half:] or points
    cpu = [p["cpu_share"] for p in points]
    passes = [p["sample_seconds"] for p in points if p["sample_seconds"] is not None]
    return {
        "cpu_median": _median(cpu), "cpu_max": max(cpu),
        "cpu_first_half": _median([p["cpu_share"] for p in first]),
        "cpu_second_half": _median([p["cpu_share"] for p in second]),
        "rss_first": points[0]["rss_bytes"], "rss_last": points[-1]["rss_bytes"],
        "rss_max": max(p["rss_bytes"] for p in points),
        "pass_median": _median(passes) if passes else float("nan"),
    }  # fmt: skip


def agent_table(data: dict[str, Any]) -> str:
    points = data["points"]
    if not points:
        return "no minute recorded"
    s = _agent_summary(points)
    minutes = data.get("elapsed_s", 0) / 60
    flagged = len(data["leaking"]) - len(data["missed"])
    return "\n".join([
        "| figure | measured | target |", "|---|---|---|",
        f"| run length | {minutes:.0f} min of {data['planned_s'] / 60:.0f} planned"
        f"{'' if data['complete'] else ' (cut short)'} | 60 min |",
        f"| processes watched | {points[-1]['tracked']:.0f} of {data['processes']} | all |",
        f"| agent CPU, median (max) of one-minute shares | {100 * s['cpu_median']:.2f}% "
        f"({100 * s['cpu_max']:.2f}%) of one core | < 2% |",
        f"| agent CPU, first half / second half (median) | {100 * s['cpu_first_half']:.2f}% / "
        f"{100 * s['cpu_second_half']:.2f}% | flat |",
        f"| agent RSS, first minute / last / max | {_mb(s['rss_first'])} / "
        f"{_mb(s['rss_last'])} / {_mb(s['rss_max'])} | < 150 MB, flat |",
        f"| one pass over every process (median) | {s['pass_median'] * 1000:.0f} ms | |",
        f"| leaking processes flagged | {flagged} of {len(data['leaking'])} | all |",
        f"| healthy processes ever flagged | {len(data['false_flags'])} | 0 |",
    ])  # fmt: skip


def agent_replay_point(point: dict[str, Any]) -> str:
    return (
        f"{point['hours']:4.1f} h: RSS {_mb(point['rss_over_first_bytes'], sign=True)} over "
        f"the first pass, {point['cpu_ms_per_pass']:.0f} ms CPU a pass, "
        f"{point['leaking']} flagged"
    )


def agent_replay_table(data: dict[str, Any]) -> str:
    rows = ["| hours fed | RSS over the first pass | CPU per pass | flagged |",
            "|---|---|---|---|"]  # fmt: skip
    for p in data["points"]:
        if p["hours"] % 1 == 0:
            rows.append(f"| {p['hours']:.0f} | {_mb(p['rss_over_first_bytes'], sign=True)} | "
                        f"{p['cpu_ms_per_pass']:.0f} ms | {p['leaking']} |")  # fmt: skip
    return "\n".join(rows)


def agent_section(data: dict[str, Any]) -> str:
    first = sorted(data.get("first_flag_s", {}).items(), key=lambda kv: kv[1])
    rates = data["rates_bytes_per_hour"]
    by_rate: dict[float, list[float]] = {}
    for pid, t in first:
        if pid in rates:
            by_rate.setdefault(rates[pid], []).append(t)

    def span(ts: list[float]) -> str:
        low, high = round(min(ts) / 60), round(max(ts) / 60)
        return f"{low} min" if low == high else f"{low}-{high} min"

    found = ", ".join(
        f"{rate / MB:.0f} MB/h after {span(ts)}" for rate, ts in sorted(by_rate.items())
    )
    logs = data.get("log_dir_bytes")
    return "\n\n".join([
        "## Node agent (`bench/agent.py`)",
        _code(f"{data['command']}"),
        f"{data['processes']} real Python processes, {len(data['leaking'])} of them leaking "
        f"host memory on purpose (20, 50 and 100 MB/h), the rest flat or a 20 MB sawtooth "
        f"(every two minutes); `vramguard agent --match` on them every {data['interval']} "
        f"with `--window {data['window']}`, measured from outside with psutil every minute "
        f"and its `/metrics` scraped. No GPU here: the children are judged on RSS. The agent "
        f"ran with `--log-dir` (a log line per process per pass, each fsync'd"
        + (f"; {_mb(logs)} in the folder at the end" if logs is not None else "")
        + f"), at commit {data.get('commit', 'unrecorded')}, on the shared machine: the "
        "pass's wall time includes waiting for the CPU and the disk.",
        agent_table(data),
        f"Leaks flagged: {found or 'none'}.",
        *(_agent_replay_part(load("agent_replay.json"))
          if (BENCH / "agent_replay.json").exists() else []),
    ])  # fmt: skip


def _agent_replay_part(data: dict[str, Any]) -> list[str]:
    return [
        "Longer than an hour, without waiting it: the agent's fleet (a Recorder, tracker and "
        f"detector per process) fed {data['processes']} processes' readings at "
        f"{data['interval_s']:.0f} s ({data['leaking']} growing 50 MB/h), as fast as it takes "
        "them, in one process (synthetic readings; no /proc or discovery in it):",
        _code(data["command"]),
        agent_replay_table(data),
    ]


# -- the whole file -------------------------------------------------------------------------


def _wrap(block: str) -> str:
    """Prose wrapped at 92 columns; tables, code, headings and lists as they are."""
    if block.startswith(("|", "```", "#", "- ")) or "\n|" in block:
        return block
    return textwrap.fill(block, 92, break_long_words=False, break_on_hyphens=False)


def render(previous: str) -> str:
    leak = leak_section(previous)  # the lead's text: kept as it is, never rewrapped
    sections = [
        HEADER,
        leak,
        staging_section(load("staging.json")),
        soak_section(load("soak_speed.json"), load("svtav1_sessions.json")),
        sessions_section(load("sessions.json")),
        references_section(load("references.json")),
        adapt_section(
            [load(p.name) for p in sorted(BENCH.glob("soak_adapt_20m*.json"))],
            load("soak_adapt_5m.json"),
            load("adapt.json"),
        ),
        history_section(load("history.json")),
        noise_prior_section(load("noise_prior.json")),
        bayes_reference_section(load("bayes_reference.json")),
        aiortc_section([load(p.name) for p in sorted(BENCH.glob("aiortc_*.json"))]),
        *([agent_section(load("agent.json"))] if (BENCH / "agent.json").exists() else []),
    ]
    wrapped = [
        section if section is leak else "\n\n".join(_wrap(b) for b in section.split("\n\n"))
        for section in sections
    ]
    return "\n\n".join(wrapped) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    previous = RESULTS.read_text(encoding="utf-8")
    text = render(previous)
    if args.check:
        if text != previous:
            print("bench/RESULTS.md is not what bench/*.json say: run python bench/results.py")
            return 1
        return 0
    RESULTS.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
