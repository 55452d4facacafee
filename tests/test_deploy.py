"""The deployment files as operators use them: the systemd unit under `systemd-analyze
verify` (and its exposure score), the DaemonSet against the Kubernetes schema
(kubernetes-validate, strict), the Grafana dashboard's every query parsed by promtool, and
the agent flags in each accepted by vramguard's own parser."""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from test_prometheus import needs_promtool
from vramguard.agent.metrics import AGENT_METRICS
from vramguard.cli import build_parser

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "deploy" / "systemd" / "vramguard-agent.service"
DAEMONSET = ROOT / "deploy" / "kubernetes" / "vramguard-agent.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "vramguard.json"
RULES = ROOT / "deploy" / "prometheus" / "vramguard-agent-rules.yml"
needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (systemd)"
)


def unit_lines() -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def test_the_unit_runs_the_agent_with_flags_vramguard_accepts() -> None:
    keys = unit_lines()
    command = shlex.split(keys["ExecStart"][0])
    assert Path(command[0]).name == "vramguard" and command[1] == "agent"
    args = build_parser().parse_args(command[1:])
    assert args.metrics_port == 9842 and args.log_dir == "/var/log/vramguard-agent"
    assert keys["DynamicUser"] == ["yes"] and keys["NoNewPrivileges"] == ["yes"]
    assert keys["LogsDirectory"] == ["vramguard-agent"]  # the only writable path
    for name in ("CapabilityBoundingSet", "AmbientCapabilities"):
        assert set(keys[name][0].split()) == {"CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"}


@needs_systemd
def test_systemd_verifies_the_unit_and_scores_its_exposure_low(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this machine's vramguard
    installed = shutil.which("vramguard") or sys.executable
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/vramguard", installed))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert unit.name not in done.stderr, done.stderr  # an unknown or bad key is named here
    security = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                              capture_output=True, text=True)  # fmt: skip
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", security.stdout)
    assert found, security.stdout + security.stderr
    assert float(found.group(1)) <= 3.0  # systemd's "OK" band; 9.6 for an unhardened unit


@needs_systemd
def test_systemd_verify_bites(tmp_path: Path) -> None:
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("ProtectClock=", "ProtectClok="))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True)  # fmt: skip
    assert "Unknown key 'ProtectClok'" in done.stderr


def documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(DAEMONSET.read_text()) if d]


def test_the_daemonset_follows_the_nodes_rules() -> None:
    daemonset = next(d for d in documents() if d["kind"] == "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostPID"] is True and pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False and security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["SYS_PTRACE", "DAC_READ_SEARCH"]}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "utility"}
    assert "nvidia.com/gpu" not in container["resources"]["limits"]  # no GPU claimed
    args = build_parser().parse_args(container["args"])
    assert args.metrics_host == "0.0.0.0" and args.metrics_port == 9842
    port = container["ports"][0]["containerPort"]
    assert daemonset["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(
        port
    )


def test_the_manifest_passes_the_kubernetes_schema_and_a_typo_does_not() -> None:
    validator = pytest.importorskip("kubernetes_validate", reason="pip install '.[dev]'")
    version = validator.latest_version()
    for document in documents():
        validator.validate(document, version, strict=True)
    broken = copy.deepcopy(next(d for d in documents() if d["kind"] == "DaemonSet"))
    broken["spec"]["template"]["spec"]["hostPid"] = True  # Kubernetes spells it hostPID
    with pytest.raises(validator.ValidationError):
        validator.validate(broken, version, strict=True)


def dashboard_exprs() -> list[str]:
    document = json.loads(DASHBOARD.read_text())
    assert document["uid"] and document["title"] and document["schemaVersion"] >= 36
    panels = document["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exprs = []
    for panel in panels:
        assert panel["type"] and set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["refId"] and target["expr"]
            exprs.append(target["expr"])
    variables = {v["name"] for v in document["templating"]["list"]}
    assert variables == {"datasource", "instance"}
    return exprs


def test_the_dashboard_shows_only_metrics_the_agent_publishes() -> None:
    recorded = set(re.findall(r"record: (\S+)", RULES.read_text()))
    known = {m.name for m in AGENT_METRICS} | recorded
    for expr in dashboard_exprs():
        for name in re.findall(r"\b(vramguard[:_][a-z_:]+)", expr):
            assert name in known, (name, expr)


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    exprs = [e.replace("$instance", ".*").replace("$__rate_interval", "5m")
             for e in dashboard_exprs()]  # fmt: skip
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]}]}  # fmt: skip
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout
