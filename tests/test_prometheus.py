"""Prometheus: the exporter's output, the rules under promtool, a real scrape, the runbook."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from vramguard.agent.metrics import AGENT_METRICS
from vramguard.exporter import METRICS, MetricsExporter
from vramguard.fields import SESSION_ACQUISITIONS
from vramguard.pipelines import PipelineLedger
from vramguard.tracker import Sample
from vramguard.trend import Trend

ROOT = Path(__file__).parent.parent
RULES = ROOT / "deploy" / "prometheus" / "vramguard-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests" / "vramguard-rules.test.yml"
WHY = "not installed (apt-get install prometheus)"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason=f"promtool {WHY}")
needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason=f"prometheus {WHY}"
)

FULL = Sample(
    t=60.0, process_gpu_bytes=300 * 10**6, device_used_bytes=2 * 10**9,
    device_total_bytes=8 * 10**9, host_rss_bytes=200 * 10**6, heap_free_bytes=5 * 10**6,
    open_handles=12, sessions_active=1, sessions_idle=2, reference_bytes=10 * 10**6,
    staging_in_use_bytes=3 * 10**6, staging_idle_bytes=6 * 10**6, frames_encoded=3600,
    frames_dropped_memory=0, frames_late=2,
)  # fmt: skip
TREND = Trend("stable", 3600.0, (0.0, 7200.0), None, None, None, 60, 60.0)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def test_the_exporter_publishes_every_metric_in_base_units() -> None:
    exporter = MetricsExporter()
    port = exporter.start(0)
    try:
        exporter.update(FULL, TREND, True, {"created": 2, "reused": 18, "reuse_rate": 0.9})
        text = scrape(port)
    finally:
        exporter.close()
    published = set(re.findall(r"^(vramguard_\w+?)(?:\{|\s)", text, re.M))
    assert published == {m.name for m in METRICS}
    assert "vramguard_process_gpu_memory_bytes 3e+08" in text
    assert 'vramguard_staging_bytes{state="idle"} 6e+06' in text
    assert "vramguard_leak_slope_bytes_per_second 1.0" in text
    assert "vramguard_leak_suspected 1.0" in text
    assert "# TYPE vramguard_frames_encoded_total counter" in text


def test_a_value_never_measured_is_not_published_as_zero() -> None:
    exporter = MetricsExporter()
    exporter.update(Sample(t=0.0, host_rss_bytes=10))
    names = set(exporter.snapshot())
    assert names == {"vramguard_host_resident_memory_bytes"}


def test_the_exporter_binds_loopback_by_default() -> None:
    exporter = MetricsExporter()
    port = exporter.start(0)
    try:
        assert exporter._server.server_address[0] == "127.0.0.1"
        assert port > 0
    finally:
        exporter.close()


def test_every_runbook_metric_exists_and_every_metric_is_in_the_runbook() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    documented = set(re.findall(r"`(vramguard_[a-z_]+)", runbook))
    assert documented == {m.name for m in METRICS} | {m.name for m in AGENT_METRICS}


def test_every_alert_has_a_runbook_section() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text().lower()
    for alert in re.findall(r"alert: (\w+)", RULES.read_text()):
        assert f"### {alert.lower()}" in runbook, alert


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    done = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 10 rules found" in done.stdout


@needs_promtool
def test_promtool_unit_tests_of_every_alert_pass() -> None:
    alerts = set(re.findall(r"alert: (\w+)", RULES.read_text()))
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert alerts == tested
    done = subprocess.run(
        ["promtool", "test", "rules", str(RULE_TESTS)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query(prometheus_port: int, expression: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{prometheus_port}/api/v1/query?" + urllib.parse.urlencode(
        {"query": expression}
    )
    with urllib.request.urlopen(url, timeout=5) as response:
        document = json.loads(response.read())
    result: list[dict[str, object]] = document["data"]["result"]
    return result


def wait_for(prometheus_port: int, expression: str, seconds: float = 90) -> list[dict[str, object]]:
    """The query's result once it has one (asked every second), or [] after `seconds`."""
    found: list[dict[str, object]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not found:
        time.sleep(1)
        try:
            found = query(prometheus_port, expression)
        except OSError:  # Prometheus not listening yet
            continue
    return found


def start_prometheus(
    folder: Path, rules: Path, metrics_port: int, job: str
) -> tuple[subprocess.Popen[bytes], int]:
    """A real Prometheus scraping 127.0.0.1:metrics_port every second under `rules` (its data
    in `folder`); returns it and its web port. The caller terminates it."""
    web_port = free_port()
    config = folder / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {rules}\n"
        f"scrape_configs:\n  - job_name: {job}\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address=127.0.0.1:{web_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return prometheus, web_port


@needs_prometheus
def test_a_real_prometheus_scrapes_a_soak(tmp_path: Path) -> None:
    metrics_port = free_port()
    soak = subprocess.Popen(
        [sys.executable, "-m", "vramguard", "soak", "--resolution", "320x240", "--fps", "30",
         "--duration", "120s", "--realtime", "--metrics-port", str(metrics_port), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    prometheus, web_port = start_prometheus(tmp_path, RULES, metrics_port, "vramguard")
    try:
        found = wait_for(web_port, "vramguard_frames_encoded_total")
        assert found, "Prometheus never scraped a vramguard series"
        assert found[0]["metric"]["job"] == "vramguard"  # type: ignore[index]
        assert float(found[0]["value"][1]) > 0  # type: ignore[index]
        rss = query(web_port, "vramguard_host_resident_memory_bytes")
        assert rss and float(rss[0]["value"][1]) > 10**6  # type: ignore[index]
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
        soak.send_signal(signal.SIGTERM)
        soak.communicate(timeout=60)
    assert soak.returncode == 128 + signal.SIGTERM


def test_session_counters_split_reuse_from_rate_changes_taken_in_place() -> None:
    """A managed soak's ledger: the outcomes add up to the sessions asked for, and the
    share that opened nothing is the ledger's reuse rate (in-place changes included)."""
    ledger = PipelineLedger(
        sessions_created=3, acquisitions=40, reuse_rate=37 / 40, adapted_in_place=25,
        max_idle_bytes=None, reference_peak_bytes=None, reference_peak_basis=None,
        staging_peak_bytes=None,
    )  # fmt: skip
    exporter = MetricsExporter()
    exporter.update(Sample(t=0.0, host_rss_bytes=10), pool=ledger.exporter_counts())
    outcomes = {k[0]: v for k, v in exporter.snapshot()[SESSION_ACQUISITIONS.name].items()}
    assert outcomes == {"created": 3.0, "reused": 12.0, "adapted": 25.0}
    opened_nothing = (outcomes["reused"] + outcomes["adapted"]) / sum(outcomes.values())
    assert opened_nothing == ledger.reuse_rate
