"""Test-only fault injection: make a vendor call fail on cue, to prove the runners survive it.

Not a user feature and not a flag: a test sets `VRAMGUARD_TEST_FAULTS` (read when this module
is imported, so a child process picks it up) or calls `install()`. The value is a comma
separated list; each item names a seam and when it fails:

    encode@N     the Nth frame sent to an encoder raises, as FFmpeg does when a device is lost
    open@N       the Nth encoder open fails (`open@N+`: that one and every later one)
    open-cap=K   opens fail while K sessions are open: a hardware session cap (NVENC's 8)
    staging@N    the Nth staging allocation fails, as cudaMalloc does when memory runs out
    probe@N      the Nth probe reading raises
    probe-hang@N the Nth probe reading hangs until `release_hangs()` (or 10 minutes)
    log@N        the Nth log line fails half-written with ENOSPC, as on a full disk

`N+` fails that call and every later one; `N*K` fails K calls from the Nth. Each seam is a
single `hit(site)` call at the boundary of the vendor call, a dictionary lookup when no
fault is installed.
"""

from __future__ import annotations

import errno
import os
import re
import threading
from dataclasses import dataclass

from vramguard.errors import VramguardError

FAULTS_ENV = "VRAMGUARD_TEST_FAULTS"
SITES = ("encode", "open", "staging", "probe", "probe-hang", "log")
_ITEM = re.compile(r"^(?P<site>[a-z-]+)(?:@(?P<at>\d+)(?P<more>\+|\*\d+)?|=(?P<cap>\d+))$")
_HANG_LIMIT_S = 600.0


class InjectedFault(VramguardError, RuntimeError):
    """A failure made on purpose by a test (the message says which seam)."""


@dataclass
class _Rule:
    at: int
    times: int | None  # None: every call from `at` on

    def fails(self, call: int) -> bool:
        return call >= self.at and (self.times is None or call < self.at + self.times)


class _Faults:
    def __init__(self, rules: dict[str, _Rule], cap: int | None) -> None:
        self.rules = rules
        self.cap = cap
        self.calls = dict.fromkeys(SITES, 0)
        self.open_sessions = 0
        self.lock = threading.Lock()
        self.release = threading.Event()

    def fails(self, site: str) -> bool:
        with self.lock:
            self.calls[site] += 1
            rule = self.rules.get(site)
            return rule is not None and rule.fails(self.calls[site])


def parse(spec: str) -> _Faults:
    """The rules of a `VRAMGUARD_TEST_FAULTS` value; ValueError names a bad item."""
    rules: dict[str, _Rule] = {}
    cap = None
    for item in filter(None, (part.strip() for part in spec.split(","))):
        match = _ITEM.match(item)
        if match is None:
            raise ValueError(f"bad fault {item!r}: use SITE@N, SITE@N+, SITE@N*K or open-cap=K")
        site = match["site"]
        if match["cap"] is not None:
            if site != "open-cap":
                raise ValueError(f"bad fault {item!r}: only open-cap takes =K")
            cap = int(match["cap"])
            continue
        if site not in SITES:
            raise ValueError(f"bad fault {item!r}: sites are {', '.join(SITES)}")
        more = match["more"]
        times = None if more == "+" else int(more[1:]) if more else 1
        rules[site] = _Rule(int(match["at"]), times)
    return _Faults(rules, cap)


_active: _Faults | None = None


def install(spec: str | None) -> None:
    """Install faults from a spec (None or "" removes them); counts start at zero."""
    global _active
    previous, _active = _active, parse(spec) if spec else None
    if previous is not None:
        previous.release.set()


def release_hangs() -> None:
    """Let every hung seam return (it then raises)."""
    if _active is not None:
        _active.release.set()


def hit(site: str) -> None:
    """The seam: raises (or hangs) when a fault for `site` is due; else returns at once."""
    faults = _active
    if faults is None:
        return
    if site == "probe" and faults.fails("probe-hang"):
        faults.release.wait(_HANG_LIMIT_S)
        raise InjectedFault("probe: hung, then released (test fault)")
    if faults.fails(site):
        raise error(site)


#: AVERROR_EXTERNAL as PyAV's `errno` gives it (FFERRTAG('E','X','T',' '), negated back)
AVERROR_EXTERNAL_ERRNO = 542398533


def error(site: str) -> BaseException:
    """The exception a real failure at `site` raises, of the same class and errno as PyAV's
    (what the code under test catches); the message adds what the vendor would have logged
    and says it is a test fault."""
    import av  # here, not at the top: the probes import this module, and need no PyAV

    if site == "encode":  # nvenc's lost device: the frame's encode returns AVERROR_EXTERNAL
        return av.error.ExternalError(
            AVERROR_EXTERNAL_ERRNO,
            "Generic error in an external library: device lost (test fault)",
        )
    if site == "open":  # NV_ENC_ERR_OUT_OF_MEMORY: nvenc maps it to AVERROR(ENOMEM)
        return av.error.MemoryError(
            errno.ENOMEM, "OpenEncodeSessionEx failed: out of memory (10) (test fault)"
        )
    if site == "staging":
        return MemoryError("cudaMalloc failed: out of memory (test fault)")
    if site == "log":
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return InjectedFault(f"{site}: failed (test fault)")


def session_opened() -> None:
    """An encoder session came into being: raises when a session cap is installed and full."""
    faults = _active
    if faults is None:
        return
    hit("open")
    import av

    with faults.lock:
        if faults.cap is not None and faults.open_sessions >= faults.cap:
            raise av.error.MemoryError(
                errno.ENOMEM,
                f"OpenEncodeSessionEx failed: out of memory (10): {faults.cap} sessions are "
                "open, the hardware's cap (test fault)",
            )
        faults.open_sessions += 1


def session_closed() -> None:
    faults = _active
    if faults is not None:
        with faults.lock:
            faults.open_sessions = max(0, faults.open_sessions - 1)


def open_sessions() -> int | None:
    """Encoder sessions open now, counted while faults are installed (else None): a run that
    closed everything it opened ends at zero."""
    faults = _active
    return None if faults is None else faults.open_sessions


def log_fails() -> bool:
    """Whether this log line is to fail half-written (the writer does the failing)."""
    faults = _active
    return faults is not None and faults.fails("log")


install(os.environ.get(FAULTS_ENV))
