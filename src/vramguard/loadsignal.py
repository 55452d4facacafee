"""The load a watched process is under (sessions, clients, streams), read at each sample.

Memory that follows load is not a leak; memory per unit of load that grows is. `run` and
`watch` take the load from a field of the sample (`--load sessions_active`, or one a probe
measures, such as `encoder_sessions`), from a file the server keeps current
(`--load-file`), or from a command that prints it (`--load-command`, run without a shell
under a time limit). A reading that fails costs the load of that sample (NaN), never the
sample; `check()` refuses, before the run starts, a source that cannot give one number.
"""

from __future__ import annotations

import math
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vramguard.errors import UsageError
from vramguard.tracker import SAMPLE_FIELDS, Sample

COMMAND_TIME_LIMIT_S = 5.0


class LoadSource(Protocol):
    """Where the load comes from; `read` gives a non-negative number, or None."""

    @property
    def description(self) -> str: ...

    def read(self, sample: Sample) -> float | None: ...


def _number(text: str, what: str) -> float:
    try:
        value = float(text.strip().split()[0])
    except (ValueError, IndexError):
        raise ValueError(f"{what} did not give a number: {text.strip()[:40]!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} gave {value}: a load is a count, zero or more")
    return value


@dataclass(frozen=True)
class FieldLoad:
    """A field of the sample itself."""

    field: str

    @property
    def description(self) -> str:
        return self.field

    def read(self, sample: Sample) -> float | None:
        value = sample.get(self.field)
        return value if value is not None and value >= 0 else None


@dataclass(frozen=True)
class FileLoad:
    """The first number in a file the server keeps current."""

    path: Path

    @property
    def description(self) -> str:
        return f"file {self.path}"

    def value(self) -> float:
        try:
            return _number(self.path.read_text(errors="replace"), f"load file {self.path}")
        except OSError as exc:
            raise ValueError(f"cannot read load file {self.path}: {exc.strerror}") from None

    def read(self, sample: Sample) -> float | None:
        try:
            return self.value()
        except ValueError:
            return None


@dataclass(frozen=True)
class CommandLoad:
    """The first number a command prints (run without a shell, under a time limit)."""

    argv: tuple[str, ...]
    time_limit_s: float = COMMAND_TIME_LIMIT_S

    @property
    def description(self) -> str:
        return f"command {shlex.join(self.argv)}"

    def value(self) -> float:
        what = f"load command {self.argv[0]}"
        try:
            done = subprocess.run(self.argv, capture_output=True, text=True,
                                  timeout=self.time_limit_s, check=False)  # fmt: skip
        except FileNotFoundError:
            raise ValueError(f"{what}: command not found") from None
        except subprocess.TimeoutExpired:
            raise ValueError(f"{what} took over {self.time_limit_s:g}s") from None
        except OSError as exc:
            raise ValueError(f"{what}: {exc.strerror}") from None
        if done.returncode != 0:
            raise ValueError(f"{what} exited with {done.returncode}")
        return _number(done.stdout, what)

    def read(self, sample: Sample) -> float | None:
        try:
            return self.value()
        except ValueError:
            return None


def from_arguments(
    field: str | None, file: str | None = None, command: str | None = None
) -> LoadSource | None:
    """The load source the options name (at most one), checked once now: UsageError for a
    field samples never carry, or a file or command that does not give a number."""
    given = [x for x in (field, file, command) if x is not None]
    if len(given) > 1:
        raise UsageError("give one of --load, --load-file and --load-command")
    if field is not None:
        if field not in SAMPLE_FIELDS or field in ("t", "wall_s"):
            known = ", ".join(f for f in SAMPLE_FIELDS if f not in ("t", "wall_s"))
            raise UsageError(f"--load {field!r} is not a sample field (fields: {known})")
        return FieldLoad(field)
    source: FileLoad | CommandLoad
    if file is not None:
        source = FileLoad(Path(file))
    elif command is not None:
        argv = tuple(shlex.split(command))
        if not argv:
            raise UsageError("--load-command needs a command")
        source = CommandLoad(argv)
    else:
        return None
    try:
        source.value()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return source
