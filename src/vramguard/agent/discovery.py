"""Which processes the agent watches: one pass over /proc each interval.

A process is named by its pid *and* its start time (field 22 of /proc/PID/stat), so a pid
the kernel reuses is a new process with a new tracker, never the old one's series. Each
process's labels come from its cgroup: the systemd unit (`encoder@3.service`) and the
container id (first 12 hex digits, as `docker ps` shows it) where the path has them.

Selection: without selectors, the processes that hold GPU memory by any probe (the
caller passes their pids); with `--match`, `--user` or `--cgroup`, the processes that pass
every selector given (whether or not they hold GPU memory). Kernel threads and the agent
itself are never watched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

_PF_KTHREAD = 0x00200000  # the kernel-thread flag in /proc/PID/stat's flags field
_CONTAINER_ID = re.compile(r"(?:^|[/-])([0-9a-f]{64})(?:\.scope)?$")
_UNIT = re.compile(r"\.(service|scope|socket|mount|slice)$")


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """One process as /proc shows it: who it is and where it runs."""

    pid: int
    start_ticks: int  # clock ticks after boot: with the pid, the process's identity
    comm: str  # the kernel's 15-character name
    uid: int | None = None
    cmdline: str = ""
    cgroup: str = ""  # the cgroup v2 path (or the first v1 hierarchy's)
    unit: str = ""  # the systemd unit, where the cgroup names one
    container: str = ""  # the container id (12 hex digits), where the cgroup names one

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.start_ticks)


@dataclass(frozen=True, slots=True)
class Selector:
    """The operator's choice: a regular expression on the command line, users, a cgroup."""

    match: re.Pattern[str] | None = None
    uids: frozenset[int] | None = None
    cgroup: str | None = None  # a path prefix: /system.slice/encoder@ or /kubepods.slice

    @property
    def any(self) -> bool:
        return self.match is not None or self.uids is not None or self.cgroup is not None

    def selects(self, info: ProcessInfo) -> bool:
        if self.uids is not None and info.uid not in self.uids:
            return False
        if self.cgroup is not None and not _under(info.cgroup, self.cgroup):
            return False
        return self.match is None or self.match.search(info.cmdline) is not None


def _under(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/") or "/"
    return path == prefix or path.startswith(prefix if prefix.endswith("/") else prefix + "/")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:  # gone, or not ours to read
        return None


def parse_stat(text: str) -> tuple[str, int, int] | None:
    """(comm, flags, start ticks) from /proc/PID/stat; the name may hold spaces and ')'."""
    open_, close = text.find("("), text.rfind(")")
    if open_ < 0 or close < open_:
        return None
    fields = text[close + 2 :].split()
    if len(fields) < 20:
        return None
    try:
        return text[open_ + 1 : close], int(fields[6]), int(fields[19])
    except ValueError:
        return None


def parse_cgroup(text: str) -> tuple[str, str, str]:
    """(path, unit, container) from /proc/PID/cgroup: the v2 line where there is one."""
    paths = {}
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        paths[(hierarchy, controllers)] = path
    path = paths.get(("0", ""), next(iter(paths.values()), ""))
    unit = container = ""
    for part in reversed(path.split("/")):
        found = _CONTAINER_ID.search(part)
        if found and not container:
            container = found.group(1)[:12]
        elif _UNIT.search(part) and not unit and not part.endswith(".slice"):
            unit = part
    return path, unit, container


class Discovery:
    """The processes to watch, found in one pass over /proc each call. What does not
    change in a process's life (owner, command line, cgroup) is read once per process and
    kept while it lives: a pass then reads one small file (`stat`) per process."""

    def __init__(self, proc_root: str | os.PathLike[str] = "/proc",
                 selector: Selector | None = None) -> None:  # fmt: skip
        self.root = Path(proc_root)
        self.selector = selector or Selector()
        # (pid, start, comm) -> the process, or None when it is not one to watch; the name
        # is in the key because an exec changes it (and the command line) but not the pid
        self._known: dict[tuple[int, int, str], ProcessInfo | None] = {}

    def find(self, gpu_pids: Collection[int] = (), skip: Collection[int] = ()) -> list[ProcessInfo]:
        """The processes to watch now. A process that ends mid-pass is skipped."""
        try:
            names = os.listdir(self.root)
        except OSError:
            return []
        known: dict[tuple[int, int, str], ProcessInfo | None] = {}
        found: list[ProcessInfo] = []
        selecting = self.selector.any
        for name in names:
            if not name.isdigit():
                continue
            pid = int(name)
            if pid in skip or (not selecting and pid not in gpu_pids):
                continue
            stat = _read(self.root / name / "stat")
            parsed = parse_stat(stat) if stat is not None else None
            if parsed is None:
                continue
            key = (pid, parsed[2], parsed[0])
            info = self._known[key] if key in self._known else self._describe(pid, parsed)
            known[key] = info
            if info is not None:
                found.append(info)
        self._known = known  # processes that ended are forgotten
        return found

    def _describe(self, pid: int, parsed: tuple[str, int, int]) -> ProcessInfo | None:
        if parsed[1] & _PF_KTHREAD:
            return None
        info = describe(pid, self.root, parsed, cmdline=self.selector.match is not None)
        if info is None or (self.selector.any and not self.selector.selects(info)):
            return None
        return info


def describe(
    pid: int, proc_root: Path, parsed: tuple[str, int, int], cmdline: bool = True
) -> ProcessInfo | None:
    """One process's owner, cgroup (and command line); None when it is gone."""
    comm, _, start = parsed
    base = proc_root / str(pid)
    try:
        uid: int | None = os.stat(base).st_uid
    except OSError:
        return None
    line = ""
    if cmdline:
        raw = _read(base / "cmdline")
        line = raw.replace("\0", " ").strip() if raw is not None else ""
    path, unit, container = parse_cgroup(_read(base / "cgroup") or "")
    return ProcessInfo(pid, start, comm, uid, line, path, unit, container)
