"""The node agent's own cost and its findings with many real processes.

Starts N real Python processes (the children below): most hold their memory flat (half of
those with a sawtooth: 20 MB taken and given back every two minutes), some leak host
memory on purpose at known rates. Starts `vramguard agent --match` on them with a metrics
port and a `--log-dir` (a log per process, fsync'd per line, as the systemd unit runs
it), and every minute records the agent's CPU (share of one core over that minute) and RSS
(psutil, from outside) and scrapes its metrics: which pids `vramguard_leak` flags.
The JSON is rewritten every minute, so a run cut short still says how far it got.

    python bench/agent.py --processes 200 --interval 15s --duration 1h --json bench/agent.json

Targets (issue 16): agent CPU under 2% of one core and RSS under 150 MB, flat over the
hour; every leaking process flagged, no healthy one. The machine has no GPU: the children
are judged on RSS (the agent's NVML path is covered by tests with tests/fake_nvml.py).
Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

import results as render  # bench/results.py: the one renderer of these tables

ROOT = Path(__file__).resolve().parent.parent
MARK = "vramguard-bench-child"
CHILD = """
import sys, time
rate, kind = float(sys.argv[2]), sys.argv[3]
held, start, grown = [], time.monotonic(), 0
while True:
    time.sleep(1.0)
    t = time.monotonic() - start
    if rate > 0:
        want = int(rate * t / 3600)
        if want - grown >= 1 << 18:
            held.append(b"\\1" * (want - grown))
            grown = want
    if kind == "sawtooth":
        saw = b"\\1" * (20 << 20) if (t % 120) < 60 else None
"""
LEAK_RATES = (20e6, 50e6, 100e6)  # bytes per hour, cycled over the leaking children


def parse_duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def flagged(text: str) -> set[int]:
    return {int(pid) for pid in re.findall(r'^vramguard_leak\{[^}]*pid="(\d+)"[^}]*\} 1\.0$',
                                          text, re.M)}  # fmt: skip


def gauge(text: str, name: str) -> float | None:
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def start_children(n: int, leaking: int) -> list[dict[str, Any]]:
    children = []
    for i in range(n):
        rate = LEAK_RATES[i % len(LEAK_RATES)] if i < leaking else 0.0
        kind = "leak" if rate else ("sawtooth" if i % 2 else "flat")
        proc = subprocess.Popen([sys.executable, "-c", CHILD, MARK, str(rate), kind])
        children.append({"proc": proc, "pid": proc.pid, "rate": rate, "kind": kind})
    return children


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=200)
    parser.add_argument("--leaking", type=int, default=12)
    parser.add_argument("--interval", default="15s")
    parser.add_argument("--duration", default="1h")
    parser.add_argument("--window", default="1h", help="the agent's --window")
    parser.add_argument("--every", default="60s", help="how often to record the agent")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    command = " ".join(["python bench/agent.py", *sys.argv[1:]])
    children = start_children(args.processes, args.leaking)
    time.sleep(3)  # let them all be up before the agent's first pass
    with (
        tempfile.TemporaryFile("w+") as stderr,  # the agent's own lines; read at the end
        tempfile.TemporaryDirectory(prefix="vramguard-agent-logs-") as logs,
    ):
        document = measure(args, command, children, stderr, logs)
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=1) + "\n")
    print(render.agent_table(document))
    return 0


def measure(
    args: argparse.Namespace,
    command: str,
    children: list[dict[str, Any]],
    stderr: Any,
    logs: str,
) -> dict[str, Any]:
    """Runs the agent on the children for the duration; stops it, then the children."""
    duration, every = parse_duration(args.duration), parse_duration(args.every)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    agent = subprocess.Popen(
        [sys.executable, "-m", "vramguard", "agent", "--match", MARK[:-1] + f"[{MARK[-1]}]",
         "--interval", args.interval, "--window", args.window, "--metrics-port", str(port),
         "--log-dir", logs, "--json"],
        env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
    )  # fmt: skip
    me = psutil.Process(agent.pid)
    leaking = {c["pid"] for c in children if c["rate"]}
    document: dict[str, Any] = {
        "command": command, "processes": args.processes, "leaking": sorted(leaking),
        "rates_bytes_per_hour": {str(c["pid"]): c["rate"] for c in children if c["rate"]},
        "interval": args.interval, "window": args.window, "planned_s": duration,
        "cores": os.cpu_count(), "points": [], "complete": False,
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                 capture_output=True, text=True).stdout.strip(),
    }  # fmt: skip
    started = time.monotonic()
    last_cpu, last_t = 0.0, started
    first_flag: dict[int, float] = {}
    try:
        while time.monotonic() - started < duration:
            time.sleep(min(every, duration - (time.monotonic() - started)))
            now = time.monotonic()
            cpu = me.cpu_times()
            total = cpu.user + cpu.system + cpu.children_user + cpu.children_system
            text = scrape(port)
            flags = flagged(text)
            for pid in flags:
                first_flag.setdefault(pid, now - started)
            point = {
                "t_s": round(now - started, 1),
                "cpu_share": (total - last_cpu) / (now - last_t),
                "rss_bytes": me.memory_info().rss,
                "tracked": gauge(text, "vramguard_agent_processes_tracked"),
                "sample_seconds": gauge(text, "vramguard_agent_sample_seconds"),
                "flagged": len(flags),
                "flagged_leaking": len(flags & leaking),
                "flagged_healthy": len(flags - leaking),
            }
            last_cpu, last_t = total, now
            document["points"].append(point)
            document["first_flag_s"] = {str(p): t for p, t in sorted(first_flag.items())}
            document["missed"] = sorted(leaking - set(first_flag))
            document["false_flags"] = sorted(set(first_flag) - leaking)
            document["elapsed_s"] = round(now - started, 1)
            document["log_dir_bytes"] = sum(f.stat().st_size for f in Path(logs).iterdir())
            print(render.agent_point(point), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(document, indent=1) + "\n")
        document["complete"] = True
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=120)
        stderr.seek(0)
        err = stderr.read()
        for child in children:
            child["proc"].terminate()
        for child in children:
            child["proc"].wait(timeout=30)
    document["agent_exit"] = agent.returncode
    document["agent_stderr_tail"] = err.strip().splitlines()[-5:]
    return document


if __name__ == "__main__":
    raise SystemExit(main())
