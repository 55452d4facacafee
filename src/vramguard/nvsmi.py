"""nvidia-smi's CSV logs (`--query-gpu=...` and `--query-compute-apps=...`) as series.

nvidia-smi queries the GPUs one after another, so in a log of several GPUs each row has its
own timestamp, a few milliseconds apart. A *sampling cycle* is the rows between two repeats
of a GPU (or, without an id column, rows closer in time than half the sampling interval);
every row of a cycle is placed at the cycle's first timestamp, and the device sum is taken
per cycle. A clock that steps back does not refuse the log: the cycle is placed after the
previous one (by order, one median interval later) and the step becomes a warning.

Columns may come in any order, with any extra columns; units come from the header
(`memory.used [MiB]`) or the value (`1234 MiB`); `[N/A]` and the like are gaps.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from vramguard.errors import VramguardError

_UNITS = {"b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "kb": 10**3, "mb": 10**6, "gb": 10**9}
_HEADER_UNIT = re.compile(r"^(.*?)\s*\[([^\]]*)\]\s*$")
_TIME = re.compile(
    r"\s*(\d{4})[/-](\d{1,2})[/-](\d{1,2})[ T](\d{1,2}):(\d{2}):(\d{2}(?:\.\d*)?)\s*$"
)
#: column names nvidia-smi writes for the same thing in its two queries
_INDEX = ("index",)
_BUS_ID = ("pci.bus_id", "gpu_bus_id")
_UUID = ("uuid", "gpu_uuid")
_NAME = ("name", "gpu_name")
_APP_MEMORY = ("used_gpu_memory", "used_memory")
#: lines nvidia-smi writes between rows that are not rows
_NOT_ROWS = ("no running processes found", "no devices were found")

Series = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]


class SmiError(VramguardError, ValueError):
    """A log nvidia-smi's readers refuse; the message is one line (without the path)."""


@dataclass
class SmiLog:
    """What an nvidia-smi log holds: series by name, other names for them, budgets."""

    kind: str  # "nvidia-smi-gpu" or "nvidia-smi-apps"
    series: dict[str, Series]
    default_metric: str
    aliases: dict[str, str] = field(default_factory=dict)  # bus id, uuid, name -> series
    budgets: dict[str, float] = field(default_factory=dict)  # series -> memory.total bytes
    warnings: list[str] = field(default_factory=list)


def parse_time(text: str) -> float:
    """nvidia-smi's `2026/11/27 10:00:00.123` (or ISO) as seconds; the wall clock it was
    read on is taken as is (only differences matter). ValueError if it is not a time."""
    match = _TIME.match(text)
    if match is None:
        raise ValueError(text)
    year, month, day, hour, minute = (int(g) for g in match.groups()[:5])
    stamp = dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC).timestamp()
    return stamp + float(match.group(6))


def parse_bytes(text: str, unit: str) -> float:
    """A size cell -> bytes; NaN for "[N/A]", "[Not Supported]" and the like."""
    text = text.strip()
    if not text or text.startswith("[") or text.upper() in ("N/A", "NOT SUPPORTED"):
        return math.nan
    parts = text.split()
    value = float(parts[0])
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"not a size: {text!r}")
    if len(parts) > 1:
        unit = parts[1]
    multiplier = _UNITS.get(unit.lower())
    if multiplier is None or len(parts) > 2:
        raise ValueError(f"unknown unit {unit!r}")
    return value * multiplier


def _looks_like_time(text: str) -> bool:
    return _TIME.match(text) is not None


@dataclass
class _Columns:
    """Where each column we use is, and its unit."""

    names: list[str]
    units: list[str]

    def find(self, candidates: tuple[str, ...]) -> int | None:
        return next((self.names.index(c) for c in candidates if c in self.names), None)


def _header(rows: list[list[str]]) -> tuple[_Columns, int]:
    """The columns, and the number of rows before the first data row."""
    first = [c.strip().lower() for c in rows[0]]
    if any("timestamp" in c for c in first):
        names, units = [], []
        for cell in first:
            match = _HEADER_UNIT.match(cell)
            names.append(match.group(1) if match else cell)
            units.append(match.group(2) if match else "MiB")
        if "timestamp" not in names:
            raise SmiError("CSV without a timestamp column")
        return _Columns(names, units), 1
    if not _looks_like_time(rows[0][0]):
        raise SmiError("CSV without a timestamp column (nvidia-smi's first column)")
    if len(rows[0]) == 2:  # --query-gpu=timestamp,memory.used --format=csv,noheader,nounits
        return _Columns(["timestamp", "memory.used"], ["MiB"] * 2), 0
    if len(rows[0]) == 3:  # --query-compute-apps=timestamp,pid,used_memory, noheader
        return _Columns(["timestamp", "pid", "used_gpu_memory"], ["MiB"] * 3), 0
    raise SmiError("unrecognised CSV without a header: name the columns (drop noheader)")


def read_nvidia_smi(text: str) -> SmiLog:
    """Read an nvidia-smi CSV log; SmiError (one line, naming the line) if it cannot be."""
    lines = text.splitlines()
    try:
        rows = [
            (number, row)
            for number, row in enumerate(csv.reader(lines, skipinitialspace=True), start=1)
            if row and not row[0].strip().lower().startswith(_NOT_ROWS)
        ]
    except csv.Error as exc:
        raise SmiError(f"not a CSV log ({exc})") from None
    if not rows:
        raise SmiError("no rows")
    columns, skip = _header([rows[0][1]])
    header = rows[0][1] if skip else None
    body = rows[skip:]
    time_at = columns.names.index("timestamp")
    app_memory = columns.find(_APP_MEMORY)
    apps = app_memory is not None
    memory = app_memory if apps else columns.find(("memory.used",))
    if memory is None:
        raise SmiError("CSV has neither memory.used nor used_gpu_memory")
    total_at = None if apps else columns.find(("memory.total",))
    ids = [columns.find(c) for c in (_INDEX, _UUID, _BUS_ID, _NAME)]
    pid_at = columns.find(("pid",)) if apps else None
    if apps and pid_at is None:
        raise SmiError("compute-apps CSV without a pid column")

    width = len(columns.names)
    stamps: list[float] = []
    values: list[float] = []
    totals: list[float] = []
    gpu_ids: list[tuple[str, ...]] = []
    pids: list[str] = []
    numbers: list[int] = []
    warnings: list[str] = []
    memory_unit = columns.units[memory]
    total_unit = columns.units[total_at] if total_at is not None else "MiB"
    for position, (number, row) in enumerate(body):
        if header is not None and row != header and "timestamp" in (c.strip().lower() for c in row):
            raise SmiError(
                f"line {number}: a header with other columns (nvidia-smi restarted with "
                "another query): split the log there"
            )
        if len(row) != width:
            if position == len(body) - 1 and len(row) < width:
                warnings.append(f"line {number} is torn (the writer stopped mid-line): skipped")
                continue
            if header is not None and row == header:
                continue  # nvidia-smi restarted on the same file: its header again
            raise SmiError(f"line {number} has {len(row)} columns, not {width}")
        if header is not None and row == header:
            continue
        try:
            stamps.append(parse_time(row[time_at]))
            values.append(parse_bytes(row[memory], memory_unit))
            if total_at is not None:
                totals.append(parse_bytes(row[total_at], total_unit))
        except ValueError:
            raise SmiError(f"line {number} cannot be read: {','.join(row)}") from None
        gpu_ids.append(tuple("" if i is None else row[i].strip() for i in ids))
        if pid_at is not None:
            pids.append(row[pid_at].strip())
        numbers.append(number)
    if not stamps:
        raise SmiError("no rows")
    table = _Table(
        np.array(stamps), np.array(values), np.array(totals) if totals else None, numbers
    )
    if apps:
        return _apps_log(table, gpu_ids, pids, warnings)
    return _gpu_log(table, gpu_ids, warnings)


@dataclass
class _Table:
    stamps: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    totals: npt.NDArray[np.float64] | None
    numbers: list[int]


def _cycles(stamps: npt.NDArray[np.float64], keys: list[object] | None) -> npt.NDArray[np.int64]:
    """The sampling cycle of each row: a new one when a key repeats within the current
    cycle, or when the time moves by more than half the sampling interval (either way)."""
    gaps = np.diff(stamps)
    positive = gaps[gaps > 0]
    limit = 0.5 * float(np.percentile(positive, 95)) if len(positive) else 0.0
    jumps = np.concatenate(([True], np.abs(gaps) > limit))
    if keys is None:
        return np.cumsum(jumps) - 1
    cycle = np.empty(len(stamps), dtype=np.int64)
    seen: set[object] = set()
    current = -1
    for i, key in enumerate(keys):
        if jumps[i] or key in seen:
            current += 1
            seen = set()
        seen.add(key)
        cycle[i] = current
    return cycle


def _place(
    table: _Table, cycle: npt.NDArray[np.int64], warnings: list[str]
) -> npt.NDArray[np.float64]:
    """Each cycle's time from the first sample, in order: a step back is placed one median
    interval after the previous cycle, and reported."""
    starts = np.flatnonzero(np.concatenate(([True], np.diff(cycle) != 0)))
    raw = table.stamps[starts]
    gaps = np.diff(raw)
    forward = gaps[gaps > 0]
    interval = float(np.median(forward)) if len(forward) else 0.0
    back = np.flatnonzero(gaps < 0)
    if len(back):
        first = int(back[0])
        line = table.numbers[int(starts[first + 1])]
        more = f" (and {len(back) - 1} more time(s))" if len(back) > 1 else ""
        warnings.append(
            f"line {line}: the clock steps back ({_clock(raw[first + 1])} after "
            f"{_clock(raw[first])}){more}: placed after the previous sample, by order"
        )
        gaps = gaps.copy()
        gaps[back] = interval
    return np.concatenate(([0.0], np.cumsum(gaps)))


def _clock(stamp: float) -> str:
    at = dt.datetime.fromtimestamp(stamp, dt.UTC)
    return f"{at:%Y/%m/%d %H:%M:%S}.{at.microsecond // 1000:03d}"


def _gpu_log(table: _Table, gpu_ids: list[tuple[str, ...]], warnings: list[str]) -> SmiLog:
    # the first id column present names the GPUs: index, uuid, bus id; a name only when
    # it tells them apart (eight identical cards share one)
    present = [k for k in range(3) if any(g[k] for g in gpu_ids)]
    keys: list[object] | None = [g[present[0]] for g in gpu_ids] if present else None
    cycle = _cycles(table.stamps, keys)
    times = _place(table, cycle, warnings)
    if keys is None:  # rows of a cycle are the GPUs in order
        starts = np.flatnonzero(np.concatenate(([True], np.diff(cycle) != 0)))
        position = np.arange(len(cycle)) - starts[cycle]
        names = [f"gpu:{p}" for p in position.tolist()]
    elif present[0] == 0:
        names = [f"gpu:{k}" for k in keys]
    else:
        order = {k: n for n, k in enumerate(dict.fromkeys(keys))}
        names = [f"gpu:{order[k]}" for k in keys]
    log = SmiLog("nvidia-smi-gpu", {}, "device_used_bytes", warnings=warnings)
    row_t = times[cycle]
    finite = np.isfinite(table.values)
    by_gpu: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        by_gpu.setdefault(name, []).append(i)
    for name, rows in by_gpu.items():
        index = np.array(rows)
        index = index[finite[index]]
        if len(index):
            log.series[name] = (row_t[index], table.values[index])
        if table.totals is not None:
            sizes = table.totals[rows]
            sizes = sizes[np.isfinite(sizes)]
            if len(sizes):
                log.budgets[name] = float(sizes[-1])
        first = gpu_ids[rows[0]]
        for other in first:
            if other and sum(1 for g in by_gpu if gpu_ids[by_gpu[g][0]][3] == other) <= 1:
                log.aliases.setdefault(f"gpu:{other}".lower(), name)
        if first[2]:  # the bus id without its domain: 00000000:17:00.0 -> 17:00.0
            log.aliases.setdefault(f"gpu:{first[2].split(':', 1)[-1]}".lower(), name)
    if not log.series:
        raise SmiError("no memory values (every value is N/A or the log has no rows)")
    gpus = len(by_gpu)
    cycles = int(cycle[-1]) + 1
    counts = np.bincount(cycle, weights=finite.astype(np.float64), minlength=cycles)
    sums = np.bincount(cycle, weights=np.where(finite, table.values, 0.0), minlength=cycles)
    whole = counts == gpus
    cycle_t = times
    if whole.any():
        log.series["device_used_bytes"] = (cycle_t[whole], sums[whole])
        if gpus > 1 and not whole.all():
            warnings.append(
                f"{int((~whole).sum())} of {cycles} cycles lack a GPU's value: "
                "left out of device_used_bytes"
            )
    else:
        log.default_metric = max(log.series, key=lambda k: len(log.series[k][0]))
        warnings.append("no cycle has every GPU's value: judging one GPU, not their sum")
    if table.totals is not None and log.budgets and len(log.budgets) == gpus:
        log.budgets["device_used_bytes"] = sum(log.budgets.values())
    return log


def _apps_log(
    table: _Table, gpu_ids: list[tuple[str, ...]], pids: list[str], warnings: list[str]
) -> SmiLog:
    keys: list[object] = [(pid, *g) for pid, g in zip(pids, gpu_ids, strict=True)]
    cycle = _cycles(table.stamps, keys)
    times = _place(table, cycle, warnings)
    points: dict[str, dict[int, float]] = {}
    for i, pid in enumerate(pids):
        value = float(table.values[i])
        if math.isfinite(value):
            per_cycle = points.setdefault(f"pid:{pid}", {})
            c = int(cycle[i])
            per_cycle[c] = per_cycle.get(c, 0.0) + value  # one process on several GPUs
    if not points:
        raise SmiError("no memory values (every value is N/A or the log has no rows)")
    log = SmiLog("nvidia-smi-apps", {}, "", warnings=warnings)
    for name, per_cycle in points.items():
        index = np.fromiter(per_cycle, dtype=np.int64, count=len(per_cycle))
        log.series[name] = (times[index], np.fromiter(per_cycle.values(), dtype=np.float64))
    log.default_metric = max(points, key=lambda k: len(points[k]))
    return log
