"""--noise-from LOG: an earlier run of the same process, whose noise stands in for the
history a young run has not shown yet (`vramguard.trend.noise_from`), for `analyze`, `run`
and `watch`; and the load column a log's series is judged beside."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from vramguard.commands.common import warn
from vramguard.errors import UsageError
from vramguard.noise import Variogram
from vramguard.samplelog import LogError, LogFormatError, SampleLog, read_log
from vramguard.tracker import MemoryTracker
from vramguard.trend import DetectorConfig, noise_from
from vramguard.units import format_duration


def read_earlier(path: str | None) -> SampleLog | None:
    """The earlier log --noise-from names, read once (LogError for an unusable one)."""
    return None if path is None else read_log(path)


def earlier_noise(
    earlier: SampleLog | None, name: str | None, load_field: str | None, config: DetectorConfig
) -> tuple[Variogram | None, dict[str, Any] | None]:
    """The noise of the same series in an earlier log (--noise-from), measured on the scale
    a run is judged on, and what the verdict says of it; LogError for a log that lacks the
    series or is too short to have shown its noise."""
    if earlier is None:
        return None, None
    chosen, (t, values) = earlier.metric(name)
    _, load = load_series(earlier, load_field, t)
    try:
        prior = noise_from(t, values, config, load=load)
    except ValueError as exc:
        raise LogFormatError(f"{earlier.path}: {exc}") from None
    if prior is None:
        needs = config.warmup_s + config.min_points * config.bucket_s
        raise LogError(
            f"{earlier.path} is too short to show its noise on this scale: it needs more "
            f"than {format_duration(needs)} of {chosen}"
        )
    return prior, {
        "from": str(earlier.path), "metric": chosen, "earlier_duration_s": float(t[-1] - t[0]),
        "noise_buckets": prior.history_buckets,  # the buckets its variogram was measured on
    }  # fmt: skip


def load_series(
    log: SampleLog, field: str | None, times: npt.NDArray[np.float64]
) -> tuple[str | None, npt.NDArray[np.float64] | None]:
    """The load column at the metric's sample times (its last value at or before each),
    named by --load, else `sessions_active` where the log has it. LogError for a field the
    log lacks or a negative load."""
    name = field or ("sessions_active" if "sessions_active" in log.series else None)
    if name is None:
        return None, None
    if name not in log.series:
        known = ", ".join(sorted(log.series)) or "none"
        raise LogError(f"{log.path} has no load field {name!r} for --load (it has: {known})")
    load_t, load_v = log.series[name]
    if len(load_v) and float(np.min(load_v)) < 0:
        raise LogError(f"{log.path}: load field {name!r} goes negative; a load is a count")
    at = np.searchsorted(load_t, times, side="right") - 1
    aligned = np.where(at >= 0, load_v[np.clip(at, 0, None)], np.nan)
    return name, aligned


class EarlierNoise:
    """--noise-from for a live run. The earlier log is read before the run starts (a bad
    one is refused then, a UsageError: nothing is started); its noise is given to the live
    detector once the judged metric is known, and to the final verdict on the verdict's own
    scale. A problem found mid-run (the earlier log lacks the metric the run settled on) is
    one warning for each of the two, and the run is judged without it: hours of samples
    are never lost to it."""

    def __init__(self, path: str | None, load_field: str | None) -> None:
        try:
            self.earlier = read_earlier(path)
        except LogError as exc:
            raise UsageError(str(exc)) from None
        self.load_field = load_field
        self._given = False

    def give_live(self, tracker: MemoryTracker) -> None:
        """The earlier noise to the live detector, once its metric is known."""
        if self.earlier is None or self._given or tracker.metric is None:
            return
        self._given = True
        config = tracker.detector.config
        tracker.detector.noise_prior = self.measure(tracker.metric, config, "live alerts")[0]

    def measure(
        self, metric: str | None, config: DetectorConfig, judged: str = "the verdict"
    ) -> tuple[Variogram | None, dict[str, Any] | None]:
        """The earlier noise for `metric` on `config`'s scale; a problem is one warning,
        saying what goes without it (`judged`)."""
        try:
            return earlier_noise(self.earlier, metric, self.load_field, config)
        except LogError as exc:
            warn(f"--noise-from: {exc}; {judged} without it")
            return None, None
