"""Sizes, durations and resolutions as people type them."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vramguard.units import (
    format_bytes,
    format_duration,
    parse_duration,
    parse_resolution,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("500MB", 500_000_000), ("1.5GiB", 3 * 2**29), ("4096", 4096), ("64 mib", 64 * 2**20)],
)
def test_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("60s", 60),
        ("5m", 300),
        ("24h", 86400),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("500ms", 0.5),
        ("2d", 172800),
        ("90", 90),
        ("1.5h", 5400),
        ("10min", 600),
    ],
)
def test_durations(text: str, expected: float) -> None:
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text", ["", "abc", "-5s", "0", "0s", "5x", "1h-3m", "nan", "inf", "9999d"]
)
def test_bad_durations_say_what_is_allowed(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_zero_duration_only_when_allowed() -> None:
    assert parse_duration("0s", allow_zero=True) == 0


@pytest.mark.parametrize("text", ["", "MB", "-1MB", "5 parsecs", "1e400"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


def test_resolutions() -> None:
    assert parse_resolution("1920x1080") == (1920, 1080)
    assert parse_resolution(" 320X240 ") == (320, 240)


@pytest.mark.parametrize("text", ["1920x", "0x0", "x1080", "1920*1080", "99999x10", "-2x4"])
def test_bad_resolutions(text: str) -> None:
    with pytest.raises(ValueError, match="invalid resolution"):
        parse_resolution(text)


def test_screen_formats() -> None:
    assert format_bytes(None) == "n/a"
    assert format_bytes(500 * 2**20) == "500.0 MiB"
    assert format_bytes(141 * 2**30) == "141.00 GiB"
    assert format_duration(7290) == "2h 1m"
    assert format_duration(None) == "n/a"


@given(st.text(max_size=12))
def test_parsers_raise_only_value_error(text: str) -> None:
    for parser in (parse_size, parse_duration, parse_resolution):
        with contextlib.suppress(ValueError):
            parser(text)
