"""One seeded scenario through the online detector, as the tests judge it."""

from __future__ import annotations

from vramguard.noise import Variogram
from vramguard.scenarios import Scenario
from vramguard.trend import Alarm, DetectorConfig, LeakDetector


def replay(
    trace: Scenario, config: DetectorConfig | None = None, noise_prior: Variogram | None = None
) -> LeakDetector:
    """A detector fed the whole trace (its load column where it has one) and flushed."""
    detector = LeakDetector(config or DetectorConfig(), noise_prior=noise_prior)
    detector.update_many(trace.t, trace.values, trace.load)
    detector.flush()
    return detector


def alarms_on(trace: Scenario, config: DetectorConfig | None = None) -> list[Alarm]:
    return replay(trace, config).alarms
