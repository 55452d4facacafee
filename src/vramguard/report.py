"""Pictures and pages of a run: a PNG plot and a self-contained HTML report.

The plot shows the metric over time (MiB against seconds, minutes or hours, by the run's
length: a 10-minute run is drawn in minutes), the whole-series trend, where the
detector first alarmed, the steps it found, and, where the log has them, the components our
pools hold (reference frames, staging, retained heap) stacked underneath.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vramguard.tracker import Sample
from vramguard.trend import Trend
from vramguard.units import format_rate

MiB = 2**20
_COMPONENTS = (
    ("reference frames", ("reference_bytes",)),
    ("staging", ("staging_in_use_bytes", "staging_idle_bytes")),
    ("retained heap", ("heap_free_bytes",)),
)


def _components(samples: Sequence[Sample]) -> dict[str, npt.NDArray[np.float64]]:
    out: dict[str, npt.NDArray[np.float64]] = {}
    for label, names in _COMPONENTS:
        values = [
            sum(v for n in names if (v := s.get(n)) is not None)
            if any(s.get(n) is not None for n in names)
            else np.nan
            for s in samples
        ]
        array = np.array(values, dtype=np.float64)
        if np.isfinite(array).any() and np.nanmax(array) > 0:
            out[label] = np.nan_to_num(array)
    return out


def plot_png(
    t: npt.NDArray[np.float64],
    values: npt.NDArray[np.float64],
    metric: str,
    trend: Trend,
    samples: Sequence[Sample] = (),
    title: str | None = None,
    warmup_s: float | None = None,
) -> bytes:
    """The picture of a run, as PNG bytes. `warmup_s`: the detector's warm-up, shaded (its
    samples, the encoder and the interpreter settling, are not judged)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit_s, unit = time_unit(float(t[-1] - t[0]) if len(t) else 0.0)
    hours = (t - t[0]) / unit_s if len(t) else t  # in `unit`, from the first sample
    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=110)
    try:
        components = _components(samples) if samples else {}
        if components:
            sample_hours = (np.array([s.t for s in samples]) - t[0]) / unit_s
            ax.stackplot(
                sample_hours,
                *[c / MiB for c in components.values()],
                labels=list(components),
                alpha=0.35,
            )
        if warmup_s and len(t):
            ax.axvspan(0.0, warmup_s / unit_s, color="#d9d9d9", alpha=0.5,
                       label="warm-up, not judged")  # fmt: skip
        ax.plot(hours, values / MiB, lw=1.0, color="#1f4e79", label=metric)
        if trend.slope_bytes_per_hour is not None and len(t) > 1:
            centre_h, centre_v = float(np.mean(hours)), float(np.mean(values))
            slope = trend.slope_bytes_per_hour
            line = centre_v + slope * (hours - centre_h) * unit_s / 3600.0
            label = f"trend {format_rate(slope)}"
            ax.plot(hours, line / MiB, ls="--", color="#c55a11", lw=1.2, label=label)
        for step in trend.steps:
            ax.axvline((step.t - t[0]) / unit_s, color="#7f7f7f", lw=0.6, ls=":")
        if trend.first_alert_t is not None:
            ax.axvline(trend.first_alert_t / unit_s, color="#c00000", lw=1.5, label="first alert")
        ax.set_xlabel(unit)
        ax.set_ylabel("MiB")
        ax.set_title(title or f"{metric}: {trend.verdict}")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(fig)


def time_unit(span_s: float) -> tuple[float, str]:
    """Seconds per unit and its name for a plot's time axis: a run on its own scale."""
    if span_s < 120:
        return 1.0, "seconds"
    if span_s < 2 * 3600:
        return 60.0, "minutes"
    return 3600.0, "hours"


def page_head(title: str) -> str:
    """The start of a self-contained report page, up to its heading (one style for all)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-top: 1em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: left; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>"""


def html_page(
    title: str, png: bytes, rows: Sequence[tuple[str, str]], notes: Sequence[str] = ()
) -> str:
    """One self-contained page: the plot inline and a table of the numbers."""
    image = base64.b64encode(png).decode()
    table = "\n".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows
    )
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f"""{page_head(title)}
<img alt="memory over time" src="data:image/png;base64,{image}">
<table>
{table}
</table>
<ul>{items}</ul>
</body></html>
"""


def trend_document(trend: Trend, metric: str | None, t0: float = 0.0) -> dict[str, Any]:
    """A verdict as a JSON-ready dictionary (bytes, seconds): what analyze, run, watch and
    the log's result line share. `slope_bytes_per_hour` is the whole series' growth;
    `alarm_slope_bytes_per_hour` the first alarm's recent ramp, when one alarmed."""
    ci = trend.slope_ci_bytes_per_hour
    return {
        "verdict": trend.verdict,
        "metric": metric,
        "samples": trend.samples,
        "duration_s": trend.duration_s,
        "slope_bytes_per_hour": trend.slope_bytes_per_hour,
        "slope_ci_bytes_per_hour": list(ci) if ci else None,
        "alarm_slope_bytes_per_hour": trend.alarm_slope_bytes_per_hour,
        "first_alert_t": trend.first_alert_t,
        "peak_bytes": trend.peak_bytes,
        "time_to_exhaustion_s": trend.time_to_exhaustion_s,
        "alarms": trend.alarms,
        "steps": [{"t": s.t - t0, "size_bytes": s.size_bytes} for s in trend.steps],
        "restarts": list(trend.restarts),
        "load": trend.load,
        "needs_more_s": trend.needs_more_s,
        "reason": trend.reason,
    }


#: how the screen and the HTML report name a result's keys
LABELS = {
    "slope_bytes_per_hour": "growth, whole series",
    "slope_ci_bytes_per_hour": "growth, 95% interval",
    "alarm_slope_bytes_per_hour": "growth, first alarm's ramp",
    "first_alert_t": "first alarm at",
    "time_to_exhaustion_s": "time to exhaustion",
    "alarms": "alarm episodes",
    "needs_more_s": "more samples needed",
    "peak_bytes": "peak",
    "duration_s": "duration",
    "budget_bytes": "memory budget",
    "likely_source": "likely source",
    "load": "load signal",
    "load_field": "load field",
    "window_s": "judged on a window of",
    "warmup_s": "warm-up left out",
}

#: what each likely source means, in words
SOURCES = {
    "reference frames": "reference frames: the encoders' reference sets grew with it",
    "staging": "staging: frames waiting in the staging pool grew with it",
    "retained heap": "retained heap: freed memory the C heap kept (malloc_trim returns it)",
    "sessions": "sessions: more encoder sessions were open as it grew",
    "unaccounted": "unaccounted: growth outside vramguard's own pools (sessions, staging, "
    "references) — the process itself or a library it uses",
}


def explained(document: Mapping[str, Any], key: str) -> str | None:
    """A missing or coded value in words, where a bare 'n/a' would leave a reader guessing."""
    value = document.get(key)
    if key == "time_to_exhaustion_s" and value is None and document.get("verdict") == "leak":
        return "n/a: no memory total known here (give --budget SIZE)"
    if key == "likely_source" and isinstance(value, str):
        return SOURCES.get(value, value)
    if key == "first_alert_t" and value is None and document.get("verdict") == "leak":
        return "none: the whole series' growth is the evidence"
    return None


def write_new(path: str | os.PathLike[str], data: bytes | str, force: bool = False) -> None:
    """Write a file, refusing to replace an existing one unless `force`."""
    target = Path(path)
    if not target.parent.is_dir():
        raise FileNotFoundError(f"cannot write {target}: folder {target.parent} does not exist")
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists: use --force to overwrite it")
    payload = data.encode() if isinstance(data, str) else data
    target.write_bytes(payload)


def summary_rows(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A result dictionary (bytes, seconds) as (label, value) rows for the screen or a page."""
    from vramguard.units import format_bytes, format_duration

    rows: list[tuple[str, str]] = []
    for key, value in document.items():
        if isinstance(value, dict | list) and key != "slope_ci_bytes_per_hour":
            continue
        if value is None and key in ("needs_more_s", "load_field", "alarm_slope_bytes_per_hour"):
            continue  # said only when it applies
        words = explained(document, key)
        if words is not None:
            shown = words
        elif value is None:
            shown = "not measured"
        elif key == "slope_ci_bytes_per_hour":
            low, high = value
            shown = f"[{format_rate(low)}, {format_rate(high)}]"
        elif key.endswith("_bytes_per_hour"):
            shown = format_rate(value)
        elif key.endswith("_bytes"):
            shown = format_bytes(value)
        elif key.endswith("_s") or key.endswith("_t"):
            shown = format_duration(value)
        elif isinstance(value, float):
            shown = f"{value:.4g}"
        else:
            shown = str(value)
        rows.append((LABELS.get(key, key), shown))
    return rows
