"""The two executors side by side on the test bed's one Asterisk (issue 16).

The bed's Asterisk runs both dialplans (bench mode, provisioning/asterisk_config.py):
calls from the carrier at 127.0.0.2 go to Stasis (the ARI engine), calls from
``BENCH_AGI_CARRIER_IP`` to the FastAGI dialplan (the AGI engine on port 4573);
a SIP account's call dialled with ``BENCH_AGI_OUTBOUND_PREFIX`` goes to the
FastAGI outbound dialplan. A call-flow test takes the ``call_path`` fixture
(tests/e2e/conftest.py) and runs once per executor, so neither can drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from callcontrol.agi.reports import OFFSETS_FILE, PREFIX, SUFFIX
from support.engine import EngineProcess

ARI_CARRIER = "127.0.0.2"
AGI_PORT = 4573
"""Where the bed's FastAGI dialplan asks (its ``agi.port``)."""


@dataclass(frozen=True)
class CallPath:
    executor: str
    """``ari`` or ``agi``: settings ``calls.executor`` of ``engine``."""
    engine: EngineProcess
    carrier: str
    """The caller's address: the bed routes a carrier's calls by it."""
    outbound_prefix: str = ""

    @property
    def ari_app(self) -> str:
        """The engine's ARI app: the dialplan counts and sheds its calls under it."""
        return self.engine.env["CALLCONTROL_ARI__APP"]

    def outbound(self, dialled: str) -> str:
        """What a SIP account dials to reach ``dialled`` through this executor."""
        return self.outbound_prefix + dialled


def agi_report_folder(asterisk_root: Path) -> Path:
    """Where the bed's FastAGI dialplan appends each call's hangup report
    (``/var/log/asterisk`` in the chroot), as the engine sees it."""
    return asterisk_root / "var/log/asterisk"


def clear_agi_reports(asterisk_root: Path) -> None:
    """Another run's reports (of another database) and the reader's offsets."""
    folder = agi_report_folder(asterisk_root)
    for stale in (*folder.glob(f"{PREFIX}*{SUFFIX}"), folder / OFFSETS_FILE):
        stale.unlink(missing_ok=True)
