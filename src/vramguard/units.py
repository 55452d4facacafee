"""Sizes, durations and resolutions as people type them, and bytes as people read them.

Files and metrics carry bytes and seconds; these parsers turn "500MB", "24h" and
"1920x1080" into those, and `format_bytes` turns bytes into MiB for the screen only.
Every parser raises `ValueError` with a message that says what is allowed.
"""

from __future__ import annotations

import math
import re

_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}

_DURATION_UNITS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_SIZE_RE = re.compile(rf"^\s*{_NUMBER}\s*([a-zA-Z]*)\s*$")
_DURATION_PART_RE = re.compile(rf"{_NUMBER}\s*(ms|min|s|m|h|d)?", re.IGNORECASE)
_RESOLUTION_RE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")

MAX_DIMENSION = 16384
MAX_DURATION_S = 365 * 86400.0


def parse_size(text: str) -> int:
    """Bytes from "500MB", "1.5GiB", "4096" (bytes); decimal KB/MB/GB, binary KiB/MiB/GiB."""
    match = _SIZE_RE.match(text)
    if match is None or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(
            f"invalid size {text!r}: use a number with B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"
        )
    value = float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if not math.isfinite(value) or value > 2**62:
        raise ValueError(f"invalid size {text!r}: too large")
    return int(value)


def parse_duration(text: str, *, allow_zero: bool = False) -> float:
    """Seconds from "60s", "5m", "24h", "1h30m", "500ms", "2d" or a bare number of seconds."""
    stripped = re.sub(r"\s+", "", text)
    position = 0
    total = 0.0
    parts = 0
    for match in _DURATION_PART_RE.finditer(stripped):
        if match.start() != position:
            break
        unit = (match.group(2) or "s").lower()
        total += float(match.group(1)) * _DURATION_UNITS[unit]
        position = match.end()
        parts += 1
        if match.group(2) is None:
            break
    if parts == 0 or position != len(stripped):
        raise ValueError(
            f"invalid duration {text!r}: use a number with ms, s, m, h or d (e.g. 60s, 5m, 24h)"
        )
    if total > MAX_DURATION_S:
        raise ValueError(f"invalid duration {text!r}: longer than a year")
    if total <= 0 and not (allow_zero and total == 0):
        raise ValueError(f"invalid duration {text!r}: must be greater than zero")
    return total


def parse_resolution(text: str) -> tuple[int, int]:
    """(width, height) from "1920x1080"; both positive and at most 16384."""
    match = _RESOLUTION_RE.match(text)
    if match is None:
        raise ValueError(f"invalid resolution {text!r}: use WIDTHxHEIGHT, e.g. 1920x1080")
    width, height = int(match.group(1)), int(match.group(2))
    if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
        raise ValueError(
            f"invalid resolution {text!r}: width and height must be 1 to {MAX_DIMENSION}"
        )
    return width, height


def format_bytes(value: int | float | None) -> str:
    """Bytes for the screen, in MiB (or GiB past 10 GiB); "n/a" for an unknown value."""
    if value is None:
        return "n/a"
    if abs(value) >= 10 * 2**30:
        return f"{value / 2**30:,.2f} GiB"
    return f"{value / 2**20:,.1f} MiB"


def format_rate(bytes_per_hour: float | None) -> str:
    """Growth for the screen, in the unit `format_bytes` uses: "+1.25 MiB/h"."""
    if bytes_per_hour is None or not math.isfinite(bytes_per_hour):
        return "not measured"
    if abs(bytes_per_hour) >= 10 * 2**30:
        return f"{bytes_per_hour / 2**30:+,.2f} GiB/h"
    return f"{bytes_per_hour / 2**20:+,.2f} MiB/h"


def format_duration(seconds: float | None) -> str:
    """Seconds for the screen: "45s", "12m 5s", "3h 20m", "2d 4h"; "n/a" for unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.3g}s" if seconds < 10 else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"
