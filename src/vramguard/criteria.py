"""The soak's success criteria (the plan's, each overridable) and the verdict against them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MB = 10**6


@dataclass(frozen=True, slots=True)
class Criteria:
    """The plan's success criteria, each overridable."""

    max_peak_bytes: int = 500 * MB
    max_growth_bytes_per_hour: float = 1 * MB
    min_reuse_rate: float = 0.85
    max_frames_dropped_memory: int = 0
    max_reference_bytes: int = 50 * MB


#: How reference-frame memory is known: no probe sees an encoder's decoded picture buffer,
#: so it is the policy's figure, not a reading. `bench/references.py` measures the heap a
#: reference costs, for comparison.
REFERENCES_MODELLED = (
    "modelled: references held (ReferenceTracker) x padded frame size (ReferencePolicy), "
    "not measured"
)


@dataclass(frozen=True, slots=True)
class Measures:
    """What the criteria judge of one soak (the result's fields of the same names)."""

    metric: str | None
    peak_bytes: float | None
    growth_bytes_per_hour: float | None
    growth_ci_bytes_per_hour: tuple[float, float] | None
    leak_verdict: str
    session_reuse_rate: float | None
    frames_dropped_memory: int
    reference_peak_bytes: int | None
    failure: str | None


@dataclass(frozen=True, slots=True)
class CriterionRow:
    """One criterion as measured beside its threshold. `unit` ("bytes", "bytes_per_hour",
    "ratio", "count", "text") says how `measured` and `limit` read on a screen; `threshold`
    is the text the JSON result carries (docs/log-format.md)."""

    name: str
    measured: Any
    threshold: str
    passed: bool
    basis: str
    unit: str
    relation: str  # how measured must compare with `limit`: "<", ">=", "<=" or a phrase
    limit: float | None

    @property
    def measured_here(self) -> bool:
        return not self.basis.startswith(UNMEASURED)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "measured": self.measured, "threshold": self.threshold,
                "passed": self.passed, "basis": self.basis}  # fmt: skip


UNMEASURED = "not measured in this run"


def judge(
    result: Measures, criteria: Criteria, time_scale: float = 1.0
) -> tuple[CriterionRow, ...]:
    """Each criterion as measured beside its threshold, and how the figure is known
    (`basis`: measured by a probe, counted by the runner, or modelled). A criterion that
    could not be measured in this run (reuse with a single acquisition; references in a
    baseline run, which has no policy) passes and its basis says why.

    Growth is judged on the soak's own time scale, as the detector is: a soak whose window
    is shorter than 8 h allows `max_growth_bytes_per_hour / time_scale`, the same growth
    per window length (a one-minute soak cannot resolve 1 MB/h; a 24 h soak judges it)."""
    growth = result.growth_bytes_per_hour
    ci = result.growth_ci_bytes_per_hour
    allowed = criteria.max_growth_bytes_per_hour / time_scale
    flat = growth is None or growth < allowed or (ci is not None and ci[0] <= 0)
    no_leak = result.leak_verdict != "leak"
    reuse = result.session_reuse_rate
    references = result.reference_peak_bytes
    peak = result.peak_bytes
    dropped = result.frames_dropped_memory
    metric = result.metric or "no metric"
    return (
        CriterionRow("peak memory", peak, f"< {criteria.max_peak_bytes}",
                     peak is None or peak < criteria.max_peak_bytes,
                     f"measured: {metric}" if peak is not None else UNMEASURED,
                     "bytes", "<", criteria.max_peak_bytes),
        CriterionRow("growth per hour", growth, f"CI holds 0 or < {allowed:.4g}; no alert",
                     flat and no_leak,
                     f"measured: trend of {metric}" if growth is not None else UNMEASURED,
                     "bytes_per_hour", "CI holds 0 or <", allowed),
        CriterionRow("session reuse", reuse, f">= {criteria.min_reuse_rate}",
                     reuse is None or reuse >= criteria.min_reuse_rate,
                     "counted by the session pool" if reuse is not None
                     else f"{UNMEASURED} (fewer than two acquisitions)",
                     "ratio", ">=", criteria.min_reuse_rate),
        CriterionRow("frames dropped for memory", dropped,
                     f"<= {criteria.max_frames_dropped_memory}",
                     dropped <= criteria.max_frames_dropped_memory, "counted by the runner",
                     "count", "<=", criteria.max_frames_dropped_memory),
        CriterionRow("reference frames", references,
                     f"< {criteria.max_reference_bytes} (modelled)",
                     references is None or references < criteria.max_reference_bytes,
                     REFERENCES_MODELLED if references is not None
                     else f"{UNMEASURED} (no reference policy)",
                     "bytes", "<", criteria.max_reference_bytes),
        CriterionRow("run completed", result.failure or "yes", "no fatal fault",
                     not result.failure, "the runner's own record", "text", "no fatal fault",
                     None),
    )  # fmt: skip
