"""`--log-dir`: one JSONL sample log per watched process, rotated by size.

Each file is a complete `vramguard.samples/1` log (its own header), so `vramguard analyze`
reads any of them alone: `<comm>-<pid>-<start ticks>.jsonl` is the live one, and when it
passes `max_bytes` it is renamed `.1.jsonl` (the older ones moving to `.2`, ... up to
`keep`, the oldest deleted) and a new file starts with the same header. A process's files
therefore hold at most `(keep + 1) * max_bytes` bytes.

A write that fails (a full disk) is raised once as LogError by the writer; the agent
reports it once and keeps sampling. The writer of a process whose log failed drops its
later lines (counted), and a new process whose log cannot be opened runs without one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vramguard.agent.discovery import ProcessInfo
from vramguard.samplelog import LogError, SampleLogWriter

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def log_name(info: ProcessInfo) -> str:
    """A file name of the process's name, pid and start time (a reused pid gets a new one)."""
    comm = _UNSAFE.sub("_", info.comm)[:32] or "process"
    return f"{comm}-{info.pid}-{info.start_ticks}"


class ProcessLog:
    """The rotating log of one process. `write` raises LogError once when the disk fails."""

    def __init__(
        self,
        directory: Path,
        info: ProcessInfo,
        config: dict[str, Any],
        max_bytes: int,
        keep: int,
    ) -> None:
        self.stem = directory / log_name(info)
        self.source = {"pid": info.pid, "comm": info.comm, "unit": info.unit,
                       "container": info.container, "cgroup": info.cgroup}  # fmt: skip
        self.config = config
        self.max_bytes = max_bytes
        self.keep = keep
        self.rotations = 0
        self.dropped = 0  # lines not written after the log failed
        self._error: str | None = None
        self._writer: SampleLogWriter | None = self._open(force=False)

    @property
    def path(self) -> Path:
        return self.stem.with_name(self.stem.name + ".jsonl")

    def _older(self, n: int) -> Path:
        return self.stem.with_name(f"{self.stem.name}.{n}.jsonl")

    def _open(self, force: bool) -> SampleLogWriter:
        return SampleLogWriter(self.path, self.source, self.config, force=force)

    @property
    def error(self) -> str | None:
        if self._error is not None:
            return self._error
        return self._writer.error if self._writer is not None else None

    def write(self, record: dict[str, Any]) -> None:
        """One line; LogError once when it (or the rotation after it) fails."""
        writer = self._writer
        if writer is None:
            self.dropped += 1
            return
        writer.write(record)
        if writer.error is None and writer.size >= self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        assert self._writer is not None
        self._writer.close()
        self._writer = None
        try:
            if self.keep > 0:
                self._older(self.keep).unlink(missing_ok=True)
                for n in range(self.keep - 1, 0, -1):
                    if self._older(n).exists():
                        self._older(n).rename(self._older(n + 1))
                self.path.rename(self._older(1))
            else:
                self.path.unlink()
            self._writer = self._open(force=False)
            self.rotations += 1
        except OSError as exc:
            self._error = f"cannot rotate {self.path}: {exc.strerror}; later lines are dropped"
            raise LogError(self._error) from None
        except LogError as exc:
            self._error = f"{exc}; later lines are dropped"
            raise LogError(self._error) from None

    def close(self) -> None:
        """Close the file; idempotent."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
