"""One sampling path: the Recorder's series stays bounded, its errors share one base, and
the sample fields come from one registry that Sample, probes and the exporter follow."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

from vramguard import errors, fields
from vramguard.encode import BitrateOutOfRange, EncoderError, EncoderUnavailable
from vramguard.exporter import METRICS, MetricsExporter
from vramguard.faults import InjectedFault
from vramguard.nvsmi import SmiError
from vramguard.pools.sessions import PoolError, PoolExhausted
from vramguard.pools.staging import StagingAllocationFailed, StagingBudgetExceeded
from vramguard.probes import FIELDS, NoSuchProcess, Reading
from vramguard.promhistory import PrometheusError
from vramguard.recorder import Recorder, Series
from vramguard.samplelog import LogError, LogFormatError
from vramguard.tracker import MemoryTracker, Sample


def test_a_series_past_its_limit_keeps_the_whole_span_in_fixed_memory() -> None:
    series = Series(capacity=4, max_points=16)
    for i in range(1000):
        series.append(float(i), float(i))
    assert len(series) <= 16
    assert series.times[0] == 0.0 and series.times[-1] >= 1000 - series.stride
    assert np.all(np.diff(series.times) == series.stride)  # evenly thinned, times exact


def test_a_series_under_its_limit_keeps_every_point() -> None:
    series = Series(capacity=4, max_points=1 << 10)
    for i in range(100):
        series.append(float(i), 2.0 * i)
    assert len(series) == 100 and series.stride == 1
    assert series.values.tolist() == [2.0 * i for i in range(100)]


def test_the_recorder_judges_logs_and_hears_each_sample_once() -> None:
    heard: list[Sample] = []
    recorder = Recorder(lambda: __import__("vramguard.probes").probes.read(), MemoryTracker(),
                        on_sample=heard.append)  # fmt: skip
    try:
        taken = [recorder.take(float(t), float(t), {"frames_encoded": t}) for t in range(3)]
    finally:
        recorder.close()
    assert all(s is not None for s in taken) and heard == taken
    assert heard[-1].frames_encoded == 2
    assert recorder.tracker is not None and recorder.tracker.metric == "host_rss_bytes"
    assert len(recorder.series) == 3 and recorder.duration_s == 2.0


def test_a_probe_that_raises_costs_its_sample_and_is_reported_once() -> None:
    def broken() -> Reading:
        raise OSError("smaps_rollup: permission denied")

    heard: list[str] = []
    recorder = Recorder(broken, MemoryTracker(), on_fault=lambda kind, _m: heard.append(kind))
    try:
        assert recorder.take(0.0, 0.0) is None and recorder.take(1.0, 1.0) is None
    finally:
        recorder.close()
    assert heard == ["probe"] and recorder.faults["probe"]["count"] == 2


@pytest.mark.parametrize(
    ("error", "standard"),
    [
        (EncoderError, RuntimeError), (EncoderUnavailable, RuntimeError),
        (BitrateOutOfRange, ValueError), (PoolError, RuntimeError), (PoolExhausted, PoolError),
        (StagingBudgetExceeded, MemoryError), (StagingAllocationFailed, MemoryError),
        (NoSuchProcess, LookupError), (PrometheusError, ValueError), (SmiError, ValueError),
        (LogFormatError, ValueError), (InjectedFault, RuntimeError),
    ],
)  # fmt: skip
def test_every_deliberate_error_has_the_one_base_and_keeps_its_standard_one(
    error: type[Exception], standard: type[Exception]
) -> None:
    assert issubclass(error, errors.VramguardError) and issubclass(error, standard)


def test_a_log_that_cannot_be_written_is_not_a_value_error() -> None:
    assert issubclass(LogError, errors.VramguardError)
    assert not issubclass(LogError, ValueError)  # a full disk is not bad input


def test_sample_probes_and_exporter_follow_the_one_field_registry() -> None:
    assert tuple(f.name for f in dataclasses.fields(Sample)) == fields.NAMES
    assert FIELDS == fields.PROBE_FIELDS
    published = {f.metric.name for f in fields.FIELDS if f.metric is not None}
    assert published <= {m.name for m in METRICS}
    every = Sample(**{name: 1 for name in fields.NAMES})  # type: ignore[arg-type]
    exporter = MetricsExporter()
    exporter.update(every)
    assert set(exporter.snapshot()) == published  # each field's metric, none spelled twice


def test_importing_the_probes_does_not_import_pyav_or_prometheus() -> None:
    heavy = "('av', 'prometheus_client')"
    code = (
        f"import sys; from vramguard import probes; print([m for m in {heavy} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={**os.environ})  # fmt: skip
    assert done.stdout.strip() == "[]"


def test_a_soak_takes_its_probe_reader_through_its_constructor() -> None:
    from vramguard.encode import EncoderConfig
    from vramguard.probes import read
    from vramguard.soak import SoakConfig, SoakRunner

    calls = 0

    def first_then_broken() -> Reading:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError("NVML: GPU is lost")
        return read()

    heard: list[tuple[str, str]] = []
    config = SoakConfig(EncoderConfig("h264", 160, 120, 30, 300, encoder="libx264"),
                        duration_s=2.0, sample_interval_s=0.25)  # fmt: skip
    runner = SoakRunner(config, read=first_then_broken,
                        on_fault=lambda kind, message: heard.append((kind, message)))  # fmt: skip
    result = runner.run()
    assert result.samples == 1 and result.frames_encoded == 60  # every frame, one sample
    assert heard == [("probe", "OSError: NVML: GPU is lost")]  # said once
    assert result.faults["probe"]["count"] >= 1
