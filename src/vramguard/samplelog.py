"""The sample log: JSON Lines written so that a kill -9 loses at most the line being written,
and readers for it and (through nvsmi.py) for nvidia-smi's CSV logs.

Format (`vramguard.samples/1`, documented in docs/log-format.md): a header line
`{"schema", "started", "source", "config"}`, then sample lines (`t`, `wall_s`, sizes in
bytes), event lines (`{"t", "event", ...}`) and a final `{"result": {...}}`. Each line is
written with one `write()` and fsync'd. Readers ignore unknown keys and skip a torn last
line with a warning; any other damage is a `LogError` that names the line.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np
import numpy.typing as npt

from vramguard import faults
from vramguard.errors import VramguardError
from vramguard.tracker import PREFERRED_METRICS, SAMPLE_FIELDS, Sample

SCHEMA = "vramguard.samples/1"


class LogError(VramguardError):
    """A log that cannot be read or written (a full disk, a missing folder); the message is
    one line for the user."""


class LogFormatError(LogError, ValueError):
    """A log whose content cannot be read: damaged, not a log, an unknown schema."""


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class SampleLogWriter:
    """Appends one JSON object a line, each in one write() and fsync'd.

    Refuses to replace an existing file unless `force`; the folder must exist. With
    `max_bytes`, a file that reaches it is rotated: PATH becomes `STEM.1.jsonl` (older ones
    moving up to `STEM.<keep>.jsonl`, the oldest deleted; none kept with `keep=0`) and a new
    PATH starts with the same header, so each file is a whole log that `analyze` reads alone.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        source: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        force: bool = False,
        max_bytes: int | None = None,
        keep: int = 3,
    ) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise LogError(f"cannot write {self.path}: folder {self.path.parent} does not exist")
        if self.path.is_dir():
            raise LogError(f"cannot write {self.path}: it is a folder")
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        flags |= os.O_TRUNC if force else os.O_EXCL
        try:
            self._fd: int | None = os.open(self.path, flags, 0o644)
        except FileExistsError:
            raise LogError(f"{self.path} exists: use --force to overwrite it") from None
        except OSError as exc:
            raise LogError(f"cannot write {self.path}: {exc.strerror}") from None
        self.lines = 0
        self._size = 0  # bytes of whole lines written
        self.dropped = 0  # lines not written after a failed write
        self.error: str | None = None
        self._cause = ""
        self.max_bytes = max_bytes
        self.keep = keep
        self.rotations = 0
        self._header = {"schema": SCHEMA, "started": _utc_now(), "source": source or {},
                        "config": config or {}}  # fmt: skip
        try:
            self.write(self._header)
        except LogError:
            self.close()
            raise LogError(f"cannot write {self.path}: {self._cause}") from None

    def write(self, record: dict[str, Any]) -> None:
        """One line, whole: a crash leaves at most this line torn.

        A write that fails (ENOSPC, EIO) cuts the file back to its last whole line, so it
        stays valid, and raises LogError once; later lines are dropped and counted in
        `dropped` (the caller has been told, and a run must not die for its log)."""
        if self.error is not None:
            self.dropped += 1
            return
        if self._fd is None:
            raise LogError(f"{self.path} is closed")
        data = (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode()
        try:
            self._write_all(data)
            os.fsync(self._fd)
        except OSError as exc:
            self._fail(exc)
        self._size += len(data)
        self.lines += 1
        if self.max_bytes is not None and self._size >= self.max_bytes:
            self._rotate()

    def older(self, n: int) -> Path:
        """The nth most recent rotated file: STEM.n.jsonl."""
        return self.path.with_name(f"{self.path.stem}.{n}{self.path.suffix}")

    def _rotate(self) -> None:
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        try:
            if self.keep > 0:
                self.older(self.keep).unlink(missing_ok=True)
                for n in range(self.keep - 1, 0, -1):
                    if self.older(n).exists():
                        self.older(n).rename(self.older(n + 1))
                self.path.rename(self.older(1))
            else:
                self.path.unlink()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND,
                               0o644)  # fmt: skip
        except OSError as exc:
            self.error = f"cannot rotate {self.path}: {exc.strerror}; later lines are dropped"
            raise LogError(self.error) from None
        self._size = 0
        self.rotations += 1
        self.write(self._header)

    def _write_all(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        if faults.log_fails():  # test-only seam: the disk fills in the middle of a line
            os.write(self._fd, view[: len(view) // 2])
            raise faults.error("log")
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def _fail(self, exc: OSError) -> NoReturn:
        assert self._fd is not None
        self.dropped += 1
        self._cause = exc.strerror or str(exc)
        self.error = f"cannot write {self.path}: {self._cause}"
        try:
            os.ftruncate(self._fd, self._size)  # freeing space needs none
            os.fsync(self._fd)
            kept = f"kept valid up to line {self.lines}"
        except OSError as cut:
            kept = f"its last line may be torn ({cut.strerror})"
        self.error += f"; the log is {kept}, later lines are dropped"
        raise LogError(self.error) from None

    @property
    def size(self) -> int:
        """Bytes of whole lines written so far (the header included)."""
        return self._size

    def sample(self, sample: Sample) -> None:
        self.write(sample.as_dict())

    def event(self, t: float, name: str, **data: Any) -> None:
        self.write({"t": t, "event": name, **data})

    def result(self, result: dict[str, Any]) -> None:
        self.write({"result": result})

    def close(self) -> None:
        """Close the file; idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SampleLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Series = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]
LogKind = Literal["vramguard", "nvidia-smi-gpu", "nvidia-smi-apps"]


@dataclass
class SampleLog:
    """What a log holds: series by metric name, and for vramguard logs the samples too."""

    path: str
    kind: LogKind
    series: dict[str, Series]
    header: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    default_metric: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)  # other names of series (GPU ids)
    budgets: dict[str, float] = field(default_factory=dict)  # series -> memory it may use
    _samples: list[Sample] | None = None

    @property
    def samples(self) -> list[Sample]:
        """The samples of a vramguard log (built on first use; empty for CSV logs)."""
        if self._samples is None:
            self._samples = self.samples_between(-math.inf)
        return self._samples

    def samples_between(self, t_from: float, t_to: float = math.inf) -> list[Sample]:
        """The samples with `t_from <= t <= t_to` (for attribution over an alarm's window)."""
        if "t" not in self.columns:
            return []
        start = int(np.searchsorted(self.columns["t"], t_from, side="left"))
        stop = int(np.searchsorted(self.columns["t"], t_to, side="right"))
        names = list(self.columns)
        rows = zip(*(self.columns[n][start:stop].tolist() for n in names), strict=True)
        return [
            Sample.from_dict({n: v for n, v in zip(names, row, strict=True) if v == v})
            for row in rows
        ]

    def metric(self, name: str | None = None) -> tuple[str, Series]:
        """The named series, or the best one present; LogError when there is none."""
        chosen = name or self.default_metric
        if chosen is not None and chosen not in self.series:
            chosen = self.aliases.get(chosen.lower(), chosen)
        if chosen is None or chosen not in self.series:
            known = ", ".join(sorted(self.series)) or "none"
            what = f"metric {chosen!r}" if chosen else "memory metric"
            raise LogFormatError(f"{self.path} has no {what} (it has: {known})")
        return chosen, self.series[chosen]

    def budget_bytes(self, name: str) -> float | None:
        """The memory a series can grow into (its GPU's memory.total, the device total),
        for the time to exhaustion; None when the log does not say."""
        if name in self.budgets:
            return self.budgets[name]
        totals = self.series.get("device_total_bytes")
        if name in ("process_gpu_bytes", "device_used_bytes") and totals is not None:
            return float(totals[1][-1])
        return None


def read_log(path: str | os.PathLike[str]) -> SampleLog:
    """Read a vramguard JSONL log or an nvidia-smi CSV log; LogError for anything unusable."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise LogFormatError(f"{file}: no such file") from None
    except IsADirectoryError:
        raise LogFormatError(f"{file}: is a folder, not a log") from None
    except OSError as exc:
        raise LogFormatError(f"{file}: cannot read: {exc.strerror}") from None
    if not raw.strip():
        raise LogFormatError(f"{file}: empty file")
    if b"\x00" in raw[:65536]:
        raise LogFormatError(f"{file}: binary file, not a log")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LogFormatError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    if text.lstrip().startswith(("{", "[")):
        return _read_jsonl(str(file), text)
    return _read_nvidia_smi(str(file), text)


def _read_nvidia_smi(path: str, text: str) -> SampleLog:
    from vramguard.nvsmi import SmiError, read_nvidia_smi  # nvsmi raises its own error

    try:
        smi = read_nvidia_smi(text)
    except SmiError as exc:
        raise LogFormatError(f"{path}: {exc}") from None
    kind: LogKind = "nvidia-smi-apps" if smi.kind == "nvidia-smi-apps" else "nvidia-smi-gpu"
    return SampleLog(
        path, kind, smi.series, warnings=smi.warnings, default_metric=smi.default_metric,
        aliases=smi.aliases, budgets=smi.budgets,
    )  # fmt: skip


def _read_jsonl(path: str, text: str) -> SampleLog:
    lines = text.split("\n")
    torn_last = not text.endswith("\n")
    log = SampleLog(path, "vramguard", {})
    records: list[dict[str, Any]] = []
    numbers: list[int] = []
    kept = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    try:  # one parse of the whole file; line by line only to find a bad line
        parsed = json.loads("[" + ",".join(line for _, line in kept) + "]")
    except json.JSONDecodeError:
        parsed = None
    if parsed is not None and len(parsed) != len(kept):  # a value broken over two lines
        parsed = None
    for index, (number, line) in enumerate(kept):
        try:
            record = parsed[index] if parsed is not None else json.loads(line)
        except json.JSONDecodeError:
            if torn_last and number == len(lines):
                log.warnings.append(f"line {number} is torn (the writer stopped mid-line): skipped")
                continue
            raise LogFormatError(f"{path}: line {number} is not valid JSON") from None
        if not isinstance(record, dict):
            raise LogFormatError(f"{path}: line {number} is not a JSON object")
        if "t" in record and "event" not in record:
            records.append(record)
            numbers.append(number)
        elif "schema" in record and not log.header:
            _check_header(path, record, log)
        elif "result" in record:
            log.result = record["result"] if isinstance(record["result"], dict) else None
        elif "event" in record:
            log.events.append(record)
    if not log.header:
        raise LogFormatError(f"{path}: no vramguard header line (schema {SCHEMA})")
    times = _column(path, records, numbers, "t", required=True)
    backwards = np.flatnonzero(np.diff(times) < 0)
    if len(backwards):
        i = int(backwards[0]) + 1
        raise LogFormatError(
            f"{path}: line {numbers[i]}: time goes backwards ({times[i]:g} after {times[i - 1]:g})"
        )
    present = set().union(*(r.keys() for r in records[:1000]), *(r.keys() for r in records[-10:]))
    for name in SAMPLE_FIELDS[1:]:
        if name not in present:
            continue
        values = _column(path, records, numbers, name)
        keep = np.isfinite(values)
        log.columns[name] = values
        if name != "wall_s" and keep.any():
            log.series[name] = (times[keep], values[keep])
    log.columns["t"] = times
    log.default_metric = next((m for m in PREFERRED_METRICS if m in log.series), None)
    return log


def _check_header(path: str, record: dict[str, Any], log: SampleLog) -> None:
    schema = str(record["schema"])
    if not schema.startswith("vramguard.samples/"):
        raise LogFormatError(f"{path}: unknown schema {schema!r}")
    if schema != SCHEMA:
        log.warnings.append(f"schema {schema} is newer than {SCHEMA}: reading what it can")
    log.header = record


_NUMERIC_TYPES = {int, float, type(None)}
_TIMES = ("t", "wall_s")


def _column(
    path: str, records: list[dict[str, Any]], numbers: list[int], name: str, required: bool = False
) -> npt.NDArray[np.float64]:
    """One field of every sample as floats; NaN where absent or null. Anything else that is
    not a finite number (a string, a boolean, an object, NaN, Infinity, 1e400), and a size
    or count below zero, is a LogError naming the line."""
    values = [r.get(name) for r in records]
    try:
        if all(type(v) in _NUMERIC_TYPES for v in values):
            column = np.array(values, dtype=np.float64)
            gaps = np.flatnonzero(~np.isfinite(column))
            nulls_only = not required and all(values[i] is None for i in gaps)
            if (len(gaps) == 0 or nulls_only) and (name in _TIMES or not (column < 0).any()):
                return column
    except OverflowError:  # an integer too big for a float
        pass
    for value, number in zip(values, numbers, strict=True):
        problem = _problem(value, name, required)
        if problem is not None:
            raise LogFormatError(f"{path}: line {number}: {name!r} {problem}")
    raise AssertionError("unreachable: a bad value was found above")


def _problem(value: Any, name: str, required: bool) -> str | None:
    if value is None:
        return "is missing" if required else None
    if type(value) not in _NUMERIC_TYPES:
        return "is not a number"
    try:
        number = float(value)
    except OverflowError:
        return "is out of range"
    if not math.isfinite(number):
        return "is not a finite number"
    if number < 0 and name not in _TIMES:
        return "is negative"
    return None
