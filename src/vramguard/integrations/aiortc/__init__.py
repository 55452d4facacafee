"""vramguard inside aiortc: an H.264 encoder that changes rate in place, for every new
connection (`install()`) or for chosen ones (`use(pc)`). Needs `pip install 'vramguard[aiortc]'`.

    from vramguard.integrations import aiortc as vg_aiortc

    ledger = vg_aiortc.install()  # every H.264 sender made from now on
    ...
    ledger.stats()  # LedgerStats: sessions open, their bytes, opens, in-place changes, keyframes
    vg_aiortc.uninstall()
"""

from __future__ import annotations

from vramguard.integrations import IntegrationUnavailable

try:
    import aiortc as _aiortc  # noqa: F401  (only to say clearly when it is missing)
except ImportError:
    raise IntegrationUnavailable(
        "vramguard.integrations.aiortc needs aiortc, which is not installed: "
        "pip install 'vramguard[aiortc]'"
    ) from None

from vramguard.integrations.aiortc.encoder import H264Settings, VramguardH264Encoder
from vramguard.integrations.aiortc.hooks import h264_factory, install, installed, uninstall, use
from vramguard.integrations.aiortc.ledger import EncoderCounters, EncoderLedger, LedgerStats

__all__ = [
    "EncoderCounters",
    "EncoderLedger",
    "H264Settings",
    "LedgerStats",
    "VramguardH264Encoder",
    "h264_factory",
    "install",
    "installed",
    "uninstall",
    "use",
]
