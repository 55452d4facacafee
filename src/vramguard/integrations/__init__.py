"""Plug-ins that put vramguard's encoder sessions inside streaming stacks.

Each one imports its stack only when it is itself imported: `import vramguard` never needs
them, and one whose stack is missing says so in one line (`IntegrationUnavailable`).
"""

from __future__ import annotations

from vramguard.errors import VramguardError


class IntegrationUnavailable(VramguardError, ImportError):
    """The stack an integration plugs into is not installed; the message says how to get it."""
