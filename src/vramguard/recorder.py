"""The one sampling path: a probe reading becomes a sample, the tracker's, the log's and the
caller's, with every fault reported once.

A `Recorder` owns the `Sampler` (readings on a thread of their own, under a time limit), the
`MemoryTracker`, the `FaultLog` and the log writes. Each reading, with the caller's ledger
(what its pools hold), becomes a `Sample`; the tracker takes it (the judged metric chosen on
the first: the process's GPU memory where a probe has it, else its RSS), it is written to
the log with any alert, and the judged metric goes into a bounded `Series` for the verdict.
`soak` asks without waiting (`request`, then `collect`: a slow probe costs a sample, never a
frame); `run`/`watch` and `churn` wait (`take`, at most the time limit). A reading that
fails or hangs costs its sample and is reported once (`fault`).

Teardown: `close()` stops the sampler thread (one stuck in a probe is left as a daemon);
the caller closes the log after writing its result.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from vramguard.faultlog import FaultLog
from vramguard.loadsignal import LoadSource
from vramguard.noise import Variogram
from vramguard.probes import NoSuchProcess, Reading
from vramguard.samplelog import SampleLogWriter
from vramguard.sampler import DEFAULT_TIME_LIMIT_S, Sampler, SampleResult
from vramguard.tracker import (
    LeakAlert,
    MemoryTracker,
    Sample,
    budget_for,
    choose_process_metric,
)
from vramguard.trend import DetectorConfig, Trend, detect_leak

Ledger = Mapping[str, int | None]
#: what a reading is asked for: (stream time, wall seconds since the start, the ledger)
Context = tuple[float, float, Ledger]
__all__ = ["Context", "Ledger", "Recorder", "Series", "budget_for"]

#: points a Series keeps before it thins: 12 days of one sample a second (25 MB of floats)
DEFAULT_MAX_POINTS = 1 << 20


class Series:
    """The judged metric over a whole run, for the verdict's replay, in bounded memory.

    Preallocated for `capacity` points (a soak knows how many it will take); past it, it
    grows by doubling up to `max_points`, and at `max_points` it keeps every other point (the
    run's whole span at half the rate, times exact), so a watch left on for a month holds a
    fixed amount of memory."""

    def __init__(self, capacity: int = 1024, max_points: int = DEFAULT_MAX_POINTS) -> None:
        if capacity < 2 or max_points < capacity:
            raise ValueError("a series needs 2 <= capacity <= max_points")
        self.max_points = max_points
        self._data = np.full((3, capacity), np.nan)  # t, value, load
        self._count = 0
        self.stride = 1  # samples per point kept (doubles each time the series thins)
        self._skip = 0

    def append(self, t: float, value: float, load: float | None = None) -> None:
        if self._skip:
            self._skip -= 1
            return
        if self._count == self._data.shape[1]:
            self._make_room()
        self._data[:, self._count] = (t, value, math.nan if load is None else load)
        self._count += 1
        self._skip = self.stride - 1

    def _make_room(self) -> None:
        size = self._data.shape[1]
        if size < self.max_points:
            grown = np.full((3, min(2 * size, self.max_points)), np.nan)
            grown[:, :size] = self._data
            self._data = grown
            return
        kept = self._data[:, ::2].copy()
        self._data[:] = np.nan
        self._data[:, : kept.shape[1]] = kept
        self._count = kept.shape[1]
        self.stride *= 2

    def __len__(self) -> int:
        return self._count

    @property
    def times(self) -> npt.NDArray[np.float64]:
        return self._data[0, : self._count]

    @property
    def values(self) -> npt.NDArray[np.float64]:
        return self._data[1, : self._count]

    @property
    def loads(self) -> npt.NDArray[np.float64]:
        return self._data[2, : self._count]


class Recorder:
    """Samples into a tracker, a log and a bounded series; see the module docstring.

    `tracker=None` records without judging (churn judges per cycle itself). `on_sample`
    hears every sample, `on_alert` every alert, `on_fault(kind, message)` each fault kind
    once; `load_source` adds the load signal to each sample (run/watch). `max_points` bounds
    the series (the node agent keeps hundreds of recorders)."""

    def __init__(
        self,
        read: Callable[[], Reading],
        tracker: MemoryTracker | None = None,
        log: SampleLogWriter | None = None,
        *,
        time_limit_s: float = DEFAULT_TIME_LIMIT_S,
        on_sample: Callable[[Sample], None] | None = None,
        on_alert: Callable[[LeakAlert], None] | None = None,
        on_fault: Callable[[str, str], None] | None = None,
        load_source: LoadSource | None = None,
        capacity: int = 1024,
        pid: int | None = None,
        max_points: int = DEFAULT_MAX_POINTS,
    ) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.tracker = tracker
        self.log = log
        self.reports = FaultLog(log, on_fault)
        self.on_sample = on_sample
        self.on_alert = on_alert
        self.load_source = load_source
        if load_source is not None and tracker is not None:
            tracker.load_field = "load"
        self.series = Series(capacity, max(capacity, max_points))
        self.last: Sample | None = None
        self.samples_taken = 0
        self._read = read
        self.time_limit_s = time_limit_s
        self._sampler: Sampler[Context] | None = None

    @property
    def sampler(self) -> Sampler[Context]:
        """The sampler thread, started at the first reading asked for."""
        if self._sampler is None:
            self._sampler = Sampler(self._read, self.time_limit_s)
        return self._sampler

    # -- faults and log lines -------------------------------------------------------------

    @property
    def faults(self) -> dict[str, dict[str, Any]]:
        """kind -> count, first time and message of each fault met so far."""
        return self.reports.faults

    def fault(self, kind: str, message: str, t: float) -> None:
        self.reports.fault(kind, message, t)

    def write(self, record: dict[str, Any], t: float) -> None:
        """A line to the log (a failed write is the fault `log`; the run goes on)."""
        self.reports.write(record, t)

    # -- readings -------------------------------------------------------------------------

    def request(self, t: float, wall_s: float, ledger: Ledger) -> bool:
        """Ask for a reading without waiting; False (skipped) while the last is in flight."""
        return self.sampler.request((t, wall_s, ledger))

    def collect(self, settle: bool = False) -> list[Sample]:
        """Take in the readings that finished (with `settle`, wait for the one in flight)."""
        taken = []
        for done in self.sampler.settle() if settle else self.sampler.poll():
            sample = self._sample(done)
            if sample is not None:
                self.add(sample)
                taken.append(sample)
        return taken

    def take(
        self,
        t: float,
        wall_s: float,
        ledger: Ledger | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Sample | None:
        """A reading now, waited for (at most the time limit), recorded (`extra` joins its
        log line); None when the probe failed or hung (reported once). Raises NoSuchProcess
        once the process is gone."""
        sample = self.read_now(t, wall_s, ledger)
        if sample is not None:
            self.add(sample, extra)
        return sample

    def read_now(self, t: float, wall_s: float, ledger: Ledger | None = None) -> Sample | None:
        """A reading now as a sample, not recorded (after teardown, say); None on a fault."""
        done = self.sampler.wait((t, wall_s, ledger or {}))
        if done.gone:
            raise NoSuchProcess(self.pid)
        return self._sample(done)

    def _sample(self, done: SampleResult[Context]) -> Sample | None:
        t, wall_s, ledger = done.context
        if done.reading is None:
            self.fault("probe", done.error or "no reading", t)
            return None
        sample = Sample.from_reading(done.reading, t=t, wall_s=wall_s, **ledger)
        if self.load_source is not None:
            sample = replace(sample, load=self.load_source.read(sample))
        return sample

    def add(self, sample: Sample, extra: Mapping[str, Any] | None = None) -> None:
        """Record one sample: the tracker, the series, the log, the alert, the callbacks."""
        tracker = self.tracker
        alert = None
        if tracker is not None:
            if tracker.metric is None:
                tracker.metric = choose_process_metric(sample)
            alert = tracker.add(sample)
            value = sample.get(tracker.metric) if tracker.metric else None
            if value is not None:
                self.series.append(sample.t, value, sample.load)
        self.write({**sample.as_dict(), **(extra or {})}, sample.t)
        if alert is not None:
            self.write(alert.as_dict(), sample.t)
            if self.on_alert is not None:
                self.on_alert(alert)
        self.last = sample
        self.samples_taken += 1
        if self.on_sample is not None:
            self.on_sample(sample)

    # -- the verdict ----------------------------------------------------------------------

    @property
    def duration_s(self) -> float:
        """Seconds between the first and the last sample of the judged metric."""
        times = self.series.times
        return float(times[-1] - times[0]) if len(times) else 0.0

    def verdict(
        self,
        config: DetectorConfig,
        budget_bytes: float | None = None,
        noise_prior: Variogram | None = None,
    ) -> Trend:
        """The detector replayed over every sample of the run (not only the tracker's),
        with an earlier run's noise where one is given."""
        metric = self.tracker.metric if self.tracker is not None else None
        if budget_bytes is None:
            budget_bytes = budget_for(metric, self.last)
        load = self.series.loads if self.load_source is not None else None
        return detect_leak(self.series.times, self.series.values, config, budget_bytes,
                           load=load, noise_prior=noise_prior)  # fmt: skip

    def close(self) -> None:
        """Stop the sampler thread (one stuck in a probe is left behind as a daemon)."""
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None
