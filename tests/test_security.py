"""Security: the metrics server a subcommand starts answers on loopback only, unless told
otherwise. (That `run` never uses a shell is in test_cli_run_watch.py; that another user's
process degrades to "permission denied" is in test_process_probe.py.)"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def outward_address() -> str | None:
    """This machine's address on its default route, or None when it has none."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.254", 9))  # no packet is sent for a UDP connect
        address: str = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def test_the_metrics_of_run_answer_on_loopback_and_not_outside() -> None:
    outside = outward_address()
    if outside is None:
        pytest.skip("this machine has no address but loopback")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vramguard", "run", "--interval", "0.2s", "--metrics-port", "0",
         "--", sys.executable, "-c", "import time; time.sleep(20)"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"metrics on http://([\d.]+):(\d+)/metrics", line)
        assert match is not None, line
        host, port = match.group(1), int(match.group(2))
        assert host == "127.0.0.1"
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                body = r.read().decode()
            if "vramguard_host_resident_memory_bytes" in body or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert "vramguard_host_resident_memory_bytes" in body
        with pytest.raises(OSError), socket.create_connection((outside, port), timeout=5):
            pass  # refused: nothing listens there
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
