"""A soak's result, typed: what `SoakRunner.run()` returns, `--json` prints and the log's
result line holds (`as_dict()`, with the keys and order docs/log-format.md documents)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from vramguard.criteria import CriterionRow


@dataclass(frozen=True, slots=True)
class RungResult:
    """One rate of the ladder over all its turns: frames, bytes and the rate measured."""

    kbps: int
    frames: int
    bytes: int
    measured_kbps: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"kbps": self.kbps, "frames": self.frames, "bytes": self.bytes,
                "measured_kbps": self.measured_kbps}  # fmt: skip


@dataclass(frozen=True, slots=True)
class SoakResult:
    """One soak, as measured and judged. Sizes in bytes, times in seconds (stream time but
    `wall_s`); None where this run could not measure a figure."""

    codec: str
    encoder: str | None
    encoder_reason: str | None
    hardware: bool
    resolution: str
    fps_target: int
    bitrate_kbps: int
    ladder_kbps: tuple[int, ...]
    baseline: bool
    realtime: bool
    stream_s: float
    wall_s: float
    frames_encoded: int
    fps: float | None
    bytes_out: int
    frames_dropped_memory: int
    frames_dropped_error: int
    frames_late: int
    metric: str | None
    peak_bytes: float | None
    growth_bytes_per_hour: float | None
    growth_ci_bytes_per_hour: tuple[float, float] | None
    leak_verdict: str
    first_alert_t: float | None
    leak_reason: str
    likely_source: str | None
    sessions_created: int
    acquisitions: int
    session_reuse_rate: float | None
    rate_changes: int
    adapted_in_place: int
    keyframes: int
    rate_change_keyframes: int
    max_idle_bytes: int | None
    rungs: tuple[RungResult, ...]
    reference_peak_bytes: int | None
    reference_peak_basis: str | None
    staging_peak_bytes: int | None
    heap_free_bytes: int | None
    after_teardown_bytes: float | None
    interrupted: str | None
    failure: str | None
    faults: dict[str, dict[str, Any]]
    samples: int
    samples_skipped: int
    log_error: str | None
    growth_threshold_bytes_per_hour: float
    criteria: tuple[CriterionRow, ...]
    verdict: str
    log: str | None = None  # the log's path, where the command wrote one

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def with_log(self, path: str | None) -> SoakResult:
        return replace(self, log=path)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, as documented: tuples as lists, `log` only where there is one."""
        out: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "log" and value is None:
                continue
            out[field.name] = _plain(value)
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, RungResult | CriterionRow):
        return value.as_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
