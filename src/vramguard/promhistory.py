"""History from Prometheus: a range query (`/api/v1/query_range`) read into series of bytes.

Prometheus refuses a range of more than 11,000 points per series, so a long range is read in
chunks (11,000 points each) and joined per label set. Every failure is a `PrometheusError`
whose message is one line: the server cannot be reached or does not answer in time, refuses
the credentials, rejects the query, answers with something that is not its API, returns no
series or too many. Values come back in bytes: the unit is the metric's own (`*_bytes`;
dcgm-exporter's `DCGM_FI_DEV_FB_*` are MiB) or the one the caller names.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from vramguard.errors import VramguardError

#: Prometheus refuses a range query of more than 11,000 steps: stay within it
MAX_POINTS_PER_QUERY = 11_000
MAX_SERIES = 1_000
UNITS = {"b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "kb": 10**3, "mb": 10**6, "gb": 10**9}

Opener = Callable[[urllib.request.Request, float], Any]


class PrometheusError(VramguardError, ValueError):
    """A range query that cannot be answered; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class RangeQuery:
    """What to ask: `query` over [start_s, end_s] (Unix seconds) every `step_s`."""

    url: str
    query: str
    start_s: float
    end_s: float
    step_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise PrometheusError(f"invalid Prometheus URL {self.url!r}: use http://HOST:PORT")
        if not self.query.strip():
            raise PrometheusError("empty --query: give a PromQL expression")
        if not (math.isfinite(self.step_s) and self.step_s > 0):
            raise PrometheusError(f"invalid step {self.step_s!r}: must be greater than zero")
        if not self.start_s < self.end_s:
            raise PrometheusError(
                f"the range is empty: start {iso(self.start_s)} is not before end {iso(self.end_s)}"
            )

    @property
    def shown_url(self) -> str:
        """The URL without credentials, for messages and reports."""
        parts = urllib.parse.urlsplit(self.url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", "")).rstrip("/")

    def chunks(self, max_points: int = MAX_POINTS_PER_QUERY) -> list[tuple[float, float]]:
        """[start, end] pieces of at most `max_points` points each, on the same step grid."""
        span = (max_points - 1) * self.step_s
        pieces = []
        start = self.start_s
        while start <= self.end_s:
            end = min(start + span, self.end_s)
            pieces.append((start, end))
            start = end + self.step_s
        return pieces


@dataclass(frozen=True, slots=True)
class PromSeries:
    """One returned series: its name as PromQL writes it, labels, times (Unix s), bytes."""

    name: str
    labels: Mapping[str, str]
    times_s: npt.NDArray[np.float64]
    values_bytes: npt.NDArray[np.float64]


@dataclass
class History:
    """The series a query returned, those that could not be read (name -> why), warnings."""

    query: RangeQuery
    series: list[PromSeries]
    unreadable: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    unit_bytes: int = 1


def iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")[:-6] + "Z"


def parse_time(text: str) -> float:
    """Unix seconds from `1732700000`, `2026-11-27T10:00:00Z` or `2026-11-27 10:00` (UTC
    unless the text gives an offset); ValueError with a one-line message otherwise."""
    try:
        value = float(text)
    except ValueError:
        try:
            parsed = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"invalid time {text!r}: use Unix seconds or ISO 8601 (2026-11-27T10:00:00Z)"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"invalid time {text!r}: not a time")
    return value


def series_name(metric: Mapping[str, str]) -> str:
    """`DCGM_FI_DEV_FB_USED{gpu="0",Hostname="a"}`, as PromQL writes a series."""
    name = metric.get("__name__", "")
    labels = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in metric.items()
        if k != "__name__"
    )
    return f"{name}{{{labels}}}" if labels or not name else name


def unit_of(name: str, query: str, given: str | None) -> int:
    """Bytes per value: the unit given, else the metric's own; PrometheusError if unsaid."""
    if given is not None:
        return UNITS[given.lower()]
    said = name or query
    if re.search(r"DCGM_FI_DEV_FB_\w+", said):
        return UNITS["mib"]
    if re.search(r"_bytes\b", said):
        return 1
    raise PrometheusError(
        f"cannot tell the unit of {name or query!r}: give --unit (B or MiB, for example)"
    )


def _open(request: urllib.request.Request, timeout_s: float) -> Any:
    return urllib.request.urlopen(request, timeout=timeout_s)


def _request(query: RangeQuery, start: float, end: float) -> urllib.request.Request:
    parts = urllib.parse.urlsplit(query.url)
    base = query.shown_url
    data = urllib.parse.urlencode(
        {"query": query.query, "start": f"{start:.3f}", "end": f"{end:.3f}",
         "step": f"{query.step_s:g}"}
    ).encode()  # fmt: skip
    request = urllib.request.Request(f"{base}/api/v1/query_range", data=data, method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    if parts.username is not None:
        secret = f"{urllib.parse.unquote(parts.username)}:"
        secret += urllib.parse.unquote(parts.password or "")
        request.add_header("Authorization", "Basic " + base64.b64encode(secret.encode()).decode())
    return request


def _fetch(query: RangeQuery, start: float, end: float, timeout_s: float, opener: Opener) -> Any:
    """One query_range call: its `data`, or a PrometheusError naming what went wrong."""
    where = f"Prometheus at {query.shown_url}"
    try:
        with opener(_request(query, start, end), timeout_s) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        detail = _api_error(exc.read())
        if exc.code in (401, 403):
            raise PrometheusError(
                f"{where} refused the request (HTTP {exc.code}): check the credentials "
                "(http://USER:PASSWORD@HOST:PORT)"
            ) from None
        if exc.code in (400, 422):
            raise PrometheusError(f"{where} rejected the query: {detail}") from None
        if exc.code == 404:
            raise PrometheusError(f"{where} has no /api/v1/query_range (HTTP 404): "
                                  "is it Prometheus's address?") from None  # fmt: skip
        raise PrometheusError(f"{where} failed (HTTP {exc.code}): {detail}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError | socket.timeout):
            raise PrometheusError(f"{where} did not answer within {timeout_s:g} s") from None
        text = getattr(reason, "strerror", None) or str(reason)
        raise PrometheusError(f"cannot reach {where}: {text}") from None
    except TimeoutError:
        raise PrometheusError(f"{where} did not answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise PrometheusError(f"cannot reach {where}: {exc.strerror or exc}") from None
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise PrometheusError(
            f"{where} did not answer with Prometheus's API (not JSON): is it the right address?"
        ) from None
    if not isinstance(document, dict) or document.get("status") != "success":
        raise PrometheusError(f"{where} answered with an error: {_api_error(body)}")
    data = document.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "matrix":
        kind = data.get("resultType") if isinstance(data, dict) else None
        raise PrometheusError(f"{where} answered a {kind or 'malformed'} result, not series")
    result = data.get("result")
    if not isinstance(result, list):
        raise PrometheusError(f"{where} answered a malformed result")
    return result


def _api_error(body: bytes) -> str:
    try:
        document = json.loads(body)
        message = str(document.get("error") or document.get("errorType") or "")
    except (ValueError, AttributeError, UnicodeDecodeError):
        message = body[:200].decode("utf-8", "replace")
    return " ".join(message.split()) or "no reason given"


def read_range(
    query: RangeQuery,
    *,
    unit: str | None = None,
    timeout_s: float = 30.0,
    max_points: int = MAX_POINTS_PER_QUERY,
    max_series: int = MAX_SERIES,
    opener: Opener = _open,
) -> History:
    """Every series the query returns over the range, in bytes, read chunk by chunk."""
    if unit is not None and unit.lower() not in UNITS:
        raise PrometheusError(f"invalid --unit {unit!r}: use one of B, KiB, MiB, GiB, KB, MB, GB")
    pieces: dict[tuple[tuple[str, str], ...], list[list[Any]]] = {}
    labels: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    for start, end in query.chunks(max_points):
        for entry in _fetch(query, start, end, timeout_s, opener):
            metric = entry.get("metric") if isinstance(entry, dict) else None
            values = entry.get("values") if isinstance(entry, dict) else None
            if not isinstance(metric, dict) or not isinstance(values, list):
                raise PrometheusError(
                    f"Prometheus at {query.shown_url} answered a malformed series"
                )
            key = tuple(sorted((str(k), str(v)) for k, v in metric.items()))
            labels.setdefault(key, {str(k): str(v) for k, v in metric.items()})
            pieces.setdefault(key, []).append(values)
        if len(pieces) > max_series:
            raise PrometheusError(
                f"the query returns more than {max_series} series: too many to judge one by "
                "one; narrow it with labels or aggregate (sum by (gpu) (...))"
            )
    if not pieces:
        raise PrometheusError(
            f"the query returned no series between {iso(query.start_s)} and "
            f"{iso(query.end_s)}: check the metric name and labels, and the range"
        )
    history = History(query, [])
    for key, chunks in pieces.items():
        metric = labels[key]
        name = series_name(metric)
        try:
            factor = unit_of(metric.get("__name__", ""), query.query, unit)
            times, values = _points(chunks)
        except PrometheusError as exc:
            history.unreadable[name] = str(exc)
            continue
        except (TypeError, ValueError, IndexError):
            history.unreadable[name] = "malformed points"
            continue
        if (values < 0).any():
            history.unreadable[name] = "negative values: not a memory size"
            continue
        finite = np.isfinite(values)
        if not finite.all():
            history.warnings.append(f"{name}: {int((~finite).sum())} NaN/Inf points skipped")
        if not finite.any():
            history.unreadable[name] = "no finite values"
            continue
        history.unit_bytes = factor
        history.series.append(PromSeries(name, metric, times[finite], values[finite] * factor))
    history.series.sort(key=lambda s: s.name)
    return history


def _points(chunks: list[list[Any]]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A series' [time, "value"] pairs from every chunk, in time order, each time once."""
    pairs = [pair for chunk in chunks for pair in chunk]
    times = np.array([float(p[0]) for p in pairs], dtype=np.float64)
    values = np.array([float(p[1]) for p in pairs], dtype=np.float64)
    times, first = np.unique(times, return_index=True)
    return times, values[first]
