"""The errors vramguard raises on purpose, under one base, psutil-style.

`except VramguardError` catches every error the package raises on purpose; each subclass
also keeps the standard base a caller would reach for (`MemoryError` for a staging buffer
that cannot be had, `LookupError` for a process that is gone, `ValueError` for bad input),
so code written against those keeps working. The command line turns a `UsageError` into one
clear line and exit code 2.
"""

from __future__ import annotations


class VramguardError(Exception):
    """Base of every error vramguard raises on purpose."""


class UsageError(VramguardError):
    """Bad input or usage: the message is the one line the user sees."""
