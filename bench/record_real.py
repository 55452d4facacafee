"""Record real healthy processes side by side with `vramguard run`, for tests/data/real/.

Five processes that do not leak, each sampled by its own `vramguard run --log`:

- ffmpeg: Debian's ffmpeg encoding testsrc2 640x360 to libx264 in real time;
- pyav-encoder: a PyAV libx264 loop, 640x360 at 30 fps in real time, frames drawn anew;
- web-server: a Python ThreadingHTTPServer answering JSON of random sizes, under a load
  generator in another process (about 40 requests a second);
- pool-allocator: a process that takes and returns buffers of random sizes from a pool
  with a bounded working set;
- gc-churn: a process that builds and drops cyclic garbage, so the collector saws.

Each runs for --minutes, then the logs are judged by `vramguard analyze` and the verdicts
written beside them (verdicts.json). Not a test: the test replays the recorded logs.

    python bench/record_real.py --minutes 32 --out tests/data/real
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

PYAV = """
import fractions, sys, time
import av, numpy as np
seconds = float(sys.argv[1])
ctx = av.CodecContext.create("libx264", "w")
ctx.width, ctx.height, ctx.pix_fmt = 640, 360, "yuv420p"
ctx.time_base = fractions.Fraction(1, 30)
ctx.framerate = fractions.Fraction(30, 1)
ctx.bit_rate = 1_500_000
ctx.options = {"preset": "veryfast", "tune": "zerolatency"}
ctx.open()
start = time.monotonic()
i = 0
while time.monotonic() - start < seconds:
    y = (np.arange(640)[None, :] + i * 3 + np.arange(360)[:, None]) % 256
    image = np.dstack([y, np.roll(y, i, 0), 255 - y]).astype(np.uint8)
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
    frame.pts = i
    ctx.encode(frame)
    i += 1
    time.sleep(max(0.0, start + i / 30 - time.monotonic()))
ctx.encode(None)
"""

SERVER = """
import json, random, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
seconds, port_file = float(sys.argv[1]), sys.argv[2]
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"items": [{"id": i, "name": "x" * random.randint(1, 64)}
                                     for i in range(random.randint(10, 2000))]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
open(port_file, "w").write(str(server.server_address[1]))
threading.Timer(seconds, server.shutdown).start()
server.serve_forever()
server.server_close()
"""

LOADER = """
import sys, time, urllib.request
seconds, port_file = float(sys.argv[1]), sys.argv[2]
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    try:
        port = int(open(port_file).read())
        break
    except (OSError, ValueError):
        time.sleep(0.1)
while time.monotonic() < deadline:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
    except OSError:
        pass
    time.sleep(0.025)
"""

POOL = """
import random, sys, time
seconds = float(sys.argv[1])
pool, free = [], []
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    if pool and (len(pool) > 64 or random.random() < 0.5):
        buf = pool.pop(random.randrange(len(pool)))
        free.append(buf)
        if len(free) > 16:
            free.pop(0)
    else:
        size = random.choice([64, 256, 1024]) * 1024
        buf = next((b for b in free if len(b) == size), None)
        if buf is not None:
            free.remove(buf)
        else:
            buf = bytearray(size)
        buf[::4096] = b"x" * len(buf[::4096])
        pool.append(buf)
    time.sleep(0.005)
"""

GC_CHURN = """
import random, sys, time
seconds = float(sys.argv[1])
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    nodes = [{"value": "y" * random.randint(10, 200)} for _ in range(random.randint(100, 3000))]
    for a, b in zip(nodes, nodes[1:] + nodes[:1]):
        a["next"] = b  # cycles: only the collector frees them
    del nodes
    time.sleep(0.01)
"""


def commands(seconds: float, port_file: Path) -> dict[str, list[str]]:
    py = sys.executable
    ffmpeg = shutil.which("ffmpeg")
    found = {
        "pyav-encoder": [py, "-c", PYAV, str(seconds)],
        "web-server": [py, "-c", SERVER, str(seconds), str(port_file)],
        "pool-allocator": [py, "-c", POOL, str(seconds)],
        "gc-churn": [py, "-c", GC_CHURN, str(seconds)],
    }
    if ffmpeg is not None:
        found["ffmpeg"] = [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
            "testsrc2=size=640x360:rate=30", "-t", str(int(seconds)), "-c:v", "libx264",
            "-preset", "veryfast", "-b:v", "1500k", "-f", "null", "-",
        ]  # fmt: skip
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=32.0)
    parser.add_argument("--interval", default="10s")
    parser.add_argument("--out", default="tests/data/real")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seconds = args.minutes * 60
    port_file = out / ".port"
    port_file.unlink(missing_ok=True)
    runs: dict[str, subprocess.Popen[str]] = {}
    for name, argv in commands(seconds, port_file).items():
        log = out / f"{name}.jsonl"
        runs[name] = subprocess.Popen(
            [sys.executable, "-m", "vramguard", "run", "--interval", args.interval, "--json",
             "--log", str(log), "--force", "--", *argv],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
    loader = subprocess.Popen([sys.executable, "-c", LOADER, str(seconds), str(port_file)])
    verdicts: dict[str, object] = {}
    for name, run in runs.items():
        stdout, _ = run.communicate()
        verdicts[name] = {"run_exit": run.returncode, "run": json.loads(stdout or "{}")}
    loader.wait()
    port_file.unlink(missing_ok=True)
    for name in runs:
        done = subprocess.run(
            [sys.executable, "-m", "vramguard", "analyze", str(out / f"{name}.jsonl"), "--json"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        entry = verdicts[name]
        assert isinstance(entry, dict)
        entry["analyze_exit"] = done.returncode
        entry["analyze"] = json.loads(done.stdout or "{}")
        print(f"{name}: run {entry['run'].get('verdict')}, analyze "
              f"{entry['analyze'].get('verdict')}: {entry['analyze'].get('reason')}")  # fmt: skip
    (out / "verdicts.json").write_text(json.dumps(verdicts, indent=1) + "\n")


if __name__ == "__main__":
    main()
