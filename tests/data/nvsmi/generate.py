"""Writes the real-shaped nvidia-smi logs beside it (deterministic): `python generate.py`.

Shapes as nvidia-smi 550 writes them: one row per GPU per cycle, each row stamped when that
GPU was queried (milliseconds apart), units in the header and in the values, extra columns.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

HERE = Path(__file__).parent
START = dt.datetime(2026, 11, 27, 10, 0, 0)
MiB = 2**20
GPU_COLUMNS = (
    "timestamp, name, pci.bus_id, driver_version, pstate, memory.total [MiB], "
    "memory.used [MiB], memory.free [MiB], utilization.gpu [%], temperature.gpu, power.draw [W]"
)


def stamp(at: dt.datetime) -> str:
    return f"{at:%Y/%m/%d %H:%M:%S}.{at.microsecond // 1000:03d}"


def issue_two_gpus(rnd: random.Random) -> list[str]:
    """The issue's log: six hours, two A10s, gpu 1 leaking 18 MB/h from hour two; in one
    cycle of seven the second GPU's row is stamped before the first's."""
    lines = [GPU_COLUMNS]
    for k in range(360):
        cycle = []
        for gpu in range(2):
            ms = 3 * gpu + rnd.randint(0, 2)
            if k % 7 == 3:
                ms = 9 - 8 * gpu
            at = START + dt.timedelta(seconds=60 * k, milliseconds=ms)
            used = 1200 + 300 * gpu + rnd.gauss(0, 1.5)
            hours = k / 60
            if gpu == 1 and hours > 2:
                used += (hours - 2) * 18e6 / MiB
            used = round(used)
            cycle.append(
                f"{stamp(at)}, NVIDIA A10, 00000000:{0x17 + gpu:02X}:00.0, 550.54.15, P0, "
                f"23028 MiB, {used} MiB, {23028 - used} MiB, {rnd.randint(20, 60)} %, "
                f"{rnd.randint(45, 60)}, {rnd.uniform(60, 90):.2f} W"
            )
        lines += cycle
    return lines


def eight_gpus(rnd: random.Random) -> list[str]:
    """Eight H100s, the timestamp not first, ids and uuid, nounits (the header keeps them)."""
    lines = ["index, uuid, name, timestamp, memory.used [MiB], memory.total [MiB], pstate"]
    for k in range(40):
        for gpu in range(8):
            at = START + dt.timedelta(seconds=30 * k, milliseconds=2 * gpu)
            used = 4000 + 1000 * gpu + rnd.randint(-2, 2)
            lines.append(
                f"{gpu}, GPU-{gpu:08x}-aaaa-bbbb-cccc-{gpu:012x}, NVIDIA H100 80GB HBM3, "
                f"{stamp(at)}, {used}, 81559, P0"
            )
    return lines


def one_gpu_lms_gib(rnd: random.Random) -> list[str]:
    """`-lms 500`, one GPU, values in GiB and a few [N/A] (a driver hiccup)."""
    lines = ["timestamp, memory.used [GiB], memory.total [GiB]"]
    for k in range(120):
        at = START + dt.timedelta(milliseconds=500 * k + rnd.randint(0, 3))
        used = "[N/A]" if k in (40, 41, 90) else f"{2.5 + rnd.uniform(-0.01, 0.01):.3f} GiB"
        lines.append(f"{stamp(at)}, {used}, 24 GiB")
    return lines


def clock_step(rnd: random.Random) -> list[str]:
    """Two GPUs by index; the clock is set back two minutes after an hour (an NTP step)."""
    lines = ["timestamp, index, memory.used [MiB], memory.total [MiB]"]
    for k in range(120):
        shift = -120 if k >= 60 else 0
        for gpu in range(2):
            at = START + dt.timedelta(seconds=60 * k + shift, milliseconds=4 * gpu)
            lines.append(
                f"{stamp(at)}, {gpu}, {900 + gpu * 100 + rnd.randint(-1, 1)} MiB, 16384 MiB"
            )
    return lines


def apps_come_and_go(rnd: random.Random) -> list[str]:
    """Compute apps on two GPUs: encoders start and exit; none run for a while."""
    lines = ["timestamp, gpu_name, gpu_bus_id, gpu_uuid, pid, process_name, used_gpu_memory [MiB]"]
    gpus = [("00000000:17:00.0", "GPU-0000aaaa"), ("00000000:18:00.0", "GPU-0000bbbb")]
    for k in range(90):
        running = []
        if k < 60:
            running.append((4242, 0, 300 + k // 6))  # grows 1 MiB every six minutes
        if 20 <= k < 50:
            running.append((5151, 1, 500))
        if k >= 70:
            running.append((6161, 0, 250))
        if not running:
            lines.append("No running processes found")
        for n, (pid, gpu, used) in enumerate(running):
            at = START + dt.timedelta(seconds=60 * k, milliseconds=n)
            bus, uuid = gpus[gpu]
            lines.append(
                f"{stamp(at)}, NVIDIA A10, {bus}, {uuid}, {pid}, /usr/bin/ffmpeg, {used} MiB"
            )
    return lines


def restarted(rnd: random.Random) -> list[str]:
    """nvidia-smi restarted on the same file (`>>`): its header again in the middle."""
    header = "timestamp, pci.bus_id, memory.used [MiB]"
    lines = [header]
    for k in range(20):
        if k == 10:
            lines.append(header)
        at = START + dt.timedelta(seconds=60 * k + (5 if k >= 10 else 0))
        lines.append(f"{stamp(at)}, 00000000:01:00.0, {700 + rnd.randint(0, 2)} MiB")
    return lines


def main() -> None:
    for make in (issue_two_gpus, eight_gpus, one_gpu_lms_gib, clock_step, apps_come_and_go,
                 restarted):  # fmt: skip
        lines = make(random.Random(18))
        (HERE / f"{make.__name__}.csv").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
