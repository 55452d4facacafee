"""The agent's loop: one pass per interval on the Sampler thread, then the fleet and metrics.

Each interval the loop asks the Sampler for one pass (discovery and every reading, see
`census`); a pass that raises, or that runs past the time limit (a hung driver, a stuck
/proc read), costs that interval, is reported once as the fault `probe`, and the loop goes
on: the trackers keep their state, and the next pass starts once the stuck one returns.

Teardown, in order (`close`): the sampler thread (a thread stuck in a probe is left as a
daemon), every process's last verdict and log, the probes (NVML shutdown), the metrics
server.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from vramguard.agent.census import Census, NodeReader, Request
from vramguard.agent.fleet import Fleet
from vramguard.agent.metrics import AgentExporter
from vramguard.probes import Reading
from vramguard.sampler import Sampler, SampleResult


@dataclass
class Pass:
    """One interval's request, and the census the Sampler thread fills in."""

    request: Request
    census: Census | None = None


class PassSampler(Sampler[Pass]):
    """A Sampler whose reading is a whole pass over the node (not one process)."""

    def __init__(self, reader: NodeReader, time_limit_s: float) -> None:
        self.reader = reader
        super().__init__(self._unused, time_limit_s)

    @staticmethod
    def _unused() -> Reading:
        raise AssertionError("a PassSampler reads through _one")

    def _one(self, context: Pass) -> SampleResult[Pass]:
        try:
            context.census = self.reader.read(context.request)
        except Exception as exc:  # a probe failing must not end the agent
            return SampleResult(context, None, f"{type(exc).__name__}: {exc}")
        return SampleResult(context, None)


class Agent:
    """Samples the node every `interval_s` until `stop()` or `count` passes."""

    def __init__(
        self,
        reader: NodeReader,
        fleet: Fleet,
        interval_s: float,
        max_processes: int,
        time_limit_s: float,
        exporter: AgentExporter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reader = reader
        self.fleet = fleet
        self.interval_s = interval_s
        self.max_processes = max_processes
        self.exporter = exporter
        self.clock = clock
        self.passes = 0
        self.last_pass_s: float | None = None
        self.gpu_reason: str | None = None
        self._sampler = PassSampler(reader, time_limit_s)
        self._stop = threading.Event()
        self._self = psutil.Process(os.getpid())
        self._t0 = clock()

    def stop(self, _why: str = "") -> None:
        self._stop.set()

    def step(self) -> None:
        """One pass, its results into the fleet, the metrics published."""
        started = self.clock()
        t = started - self._t0
        job = Pass(Request(frozenset(self.fleet.watched), self.max_processes))
        result = self._sampler.wait(job)
        if job.census is None:
            self.fleet.faults.fault("probe", result.error or "no reading", t)
        else:
            self.gpu_reason = job.census.gpu_reason
            self.fleet.update(job.census, t)
        self.passes += 1
        self.last_pass_s = self.clock() - started
        if self.exporter is not None:
            self.exporter.publish(self.fleet, self.cost())

    def cost(self) -> dict[str, float]:
        """The agent's own: last pass's wall time, RSS and CPU seconds so far."""
        cpu = self._self.cpu_times()
        return {
            "sample_seconds": self.last_pass_s or 0.0,
            "resident_memory_bytes": float(self._self.memory_info().rss),
            "cpu_seconds_total": cpu.user + cpu.system,
        }

    def run(self, count: int | None = None) -> None:
        """Pass after pass, one per interval, until stopped (or `count` passes)."""
        next_at = self.clock()
        while not self._stop.is_set() and (count is None or self.passes < count):
            self.step()
            if count is not None and self.passes >= count:
                break
            # a pass longer than the interval delays the next one; passes never bunch up
            next_at = max(next_at + self.interval_s, self.clock())
            self._stop.wait(max(0.0, next_at - self.clock()))

    def close(self) -> None:
        """Teardown in the documented order; idempotent enough to call once in finally."""
        self._sampler.close()
        self.fleet.close(self.clock() - self._t0)
        self.reader.close()
        if self.exporter is not None:
            self.exporter.close()
