"""The agent's metrics: process-labelled series, the per-process rules under promtool, and a
real Prometheus scraping a real agent whose rules fire for the leaking process only."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from children import children, marker, pattern
from test_agent import FAST, reader
from test_prometheus import (
    free_port,
    needs_prometheus,
    needs_promtool,
    query,
    scrape,
    start_prometheus,
    wait_for,
)
from vramguard.agent.fleet import Fleet
from vramguard.agent.loop import Agent
from vramguard.agent.metrics import AGENT_METRICS, AgentExporter

ROOT = Path(__file__).parent.parent
RULES = ROOT / "deploy" / "prometheus" / "vramguard-agent-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests" / "vramguard-agent-rules.test.yml"


def test_each_process_has_its_own_labelled_series_until_it_exits() -> None:
    mark = marker()
    exporter = AgentExporter()
    port = exporter.start(0)
    fleet = Fleet(FAST)
    with children(mark, 0, 0) as procs:
        agent = Agent(reader(mark), fleet, 0.05, 256, 5.0, exporter)
        try:
            agent.run(5)
            text = scrape(port)
            for proc in procs:
                assert re.search(
                    rf'vramguard_agent_process_resident_memory_bytes\{{[^}}]*pid="{proc.pid}"', text
                )
            assert "vramguard_agent_processes_tracked 2.0" in text
            assert re.search(r"^vramguard_agent_sample_seconds \d", text, re.M)
            assert re.search(r"^vramguard_agent_resident_memory_bytes \d", text, re.M)
            published = set(re.findall(r"^(vramguard_\w+?)(?:\{|\s)", text, re.M))
            assert published <= {m.name for m in AGENT_METRICS}
            procs[1].kill()
            procs[1].wait()
            agent.run(7)
            text = scrape(port)
            assert f'pid="{procs[1].pid}"' not in text and f'pid="{procs[0].pid}"' in text
            assert "vramguard_agent_processes_dropped_total 1.0" in text
        finally:
            agent.close()  # closes the exporter too


def test_every_agent_metric_and_alert_is_in_the_runbook() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    documented = set(re.findall(r"`(vramguard_[a-z_]+)", runbook))
    assert {m.name for m in AGENT_METRICS} <= documented
    for alert in re.findall(r"alert: (\w+)", RULES.read_text()):
        assert f"### {alert.lower()}" in runbook.lower(), alert


@needs_promtool
def test_promtool_checks_and_tests_the_agent_rules() -> None:
    done = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = set(re.findall(r"alert: (\w+)", RULES.read_text()))
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert alerts == tested
    done = subprocess.run(["promtool", "test", "rules", str(RULE_TESTS)], capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@needs_prometheus
def test_a_real_prometheus_fires_the_leak_rule_for_the_leaking_process_only(
    tmp_path: Path,
) -> None:
    mark = marker()
    rules = tmp_path / "rules.yml"  # the shipped rules, their `for:` shortened to seconds
    rules.write_text(re.sub(r"for: \d+m", "for: 2s", RULES.read_text()))
    metrics_port = free_port()
    with children(mark, 200_000, 0) as procs:
        leaky, flat = procs[0].pid, procs[1].pid
        agent = subprocess.Popen(
            [sys.executable, "-m", "vramguard", "agent", "--match", pattern(mark),
             "--interval", "0.1s", "--window", "30s", "--metrics-port", str(metrics_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        prometheus, web_port = start_prometheus(tmp_path, rules, metrics_port, "agent")
        try:
            expression = 'ALERTS{alertname="VramguardProcessLeak",alertstate="firing"}'
            firing = wait_for(web_port, expression)
            assert firing, "the leak rule never fired"
            time.sleep(2)  # a flat process would have fired by now too
            firing = query(web_port, expression)
            assert {a["metric"]["pid"] for a in firing} == {str(leaky)}  # type: ignore[index]
            flags = {r["metric"]["pid"]: r["value"][1]  # type: ignore[index]
                     for r in query(web_port, "vramguard_leak")}  # fmt: skip
            assert flags == {str(leaky): "1", str(flat): "0"}
        finally:
            prometheus.terminate()
            prometheus.wait(timeout=30)
            agent.terminate()
            _, err = agent.communicate(timeout=60)
    assert agent.returncode == 0, err
