"""`read()` joins the probes: each field from the first probe that measured it, named."""

from __future__ import annotations

from dataclasses import dataclass, field

from vramguard.probes import ProbeResult, ProbeStatus, read


@dataclass
class StubProbe:
    name: str
    values: dict[str, int] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    fields: tuple[str, ...] = ()

    def status(self) -> ProbeStatus:
        return ProbeStatus(self.name, True)

    def read(self, pid: int) -> ProbeResult:
        return ProbeResult(self.values, self.missing)

    def close(self) -> None:
        pass


def test_the_first_probe_that_measured_a_field_wins_and_is_named() -> None:
    probes = [
        StubProbe("process", {"host_rss_bytes": 100}),
        StubProbe("nvml", {"device_used_bytes": 5}, {"process_gpu_bytes": "WDDM"}),
        StubProbe("windows", {"process_gpu_bytes": 7, "device_used_bytes": 6}),
    ]
    reading = read(123, probes)
    assert reading.process_gpu_bytes == 7
    assert reading.device_used_bytes == 5
    assert reading.sources == {
        "host_rss_bytes": "process",
        "device_used_bytes": "nvml",
        "process_gpu_bytes": "windows",
    }
    assert reading.source == "windows"


def test_the_source_falls_back_to_the_device_figure() -> None:
    reading = read(1, [StubProbe("drm", {"device_used_bytes": 5})])
    assert reading.source == "drm"


def test_fields_nobody_measured_are_none_with_every_reason() -> None:
    probes = [
        StubProbe("nvml", missing={"process_gpu_bytes": "no driver"}),
        StubProbe("drm", missing={"process_gpu_bytes": "no devices"}),
    ]
    reading = read(1, probes)
    assert reading.process_gpu_bytes is None
    assert reading.unavailable["process_gpu_bytes"] == "nvml: no driver; drm: no devices"
    assert reading.unavailable["threads"] == "no probe measures this here"
    assert reading.as_dict()["process_gpu_bytes"] is None
