"""Errors the command line turns into one clear line and exit code 2."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input or usage: the message is the one line the user sees."""
