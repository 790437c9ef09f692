"""What provisioning's service and its back-ends share (no module imports both ways).

``service.py`` builds a back-end and feeds it ``DesiredState``; the back-ends
(``file_backend.py``, ``realtime_backend.py``) implement ``Backend`` and answer
``SyncReport``. Both import these types from here, never from each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from provisioning.pjsip import Changes, SipAccountSpec, TrunkSpec

ReloadStatus = Literal["done", "not-needed", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    message: str


@runtime_checkable
class PjsipReloader(Protocol):
    """Makes Asterisk re-read pjsip.conf and its includes (``reloaders.py``: ARI or AMI)."""

    async def reload_pjsip(self) -> ReloadResult: ...


@dataclass(frozen=True, slots=True)
class DesiredState:
    """What Asterisk should know: every SIP account and trunk, validated."""

    accounts: tuple[SipAccountSpec, ...]
    trunks: tuple[TrunkSpec, ...]


@dataclass(frozen=True, slots=True)
class SyncReport:
    changes: Changes
    reload: ReloadStatus  # file back-end; realtime needs none ("not-needed")
    reload_error: str | None = None  # the last reload failed; it is being retried

    def summary(self) -> str:
        text = self.changes.summary()
        if self.reload == "failed":
            return f"{text}; RELOAD FAILED ({self.reload_error}); will retry"
        if self.reload == "skipped":
            return f"{text}; not reloaded (reload_via=off): Asterisk sees it on its next reload"
        if self.reload == "done":
            return f"{text}; res_pjsip reloaded"
        return text


class Backend(Protocol):
    async def account_changed(self, spec: SipAccountSpec) -> None: ...
    async def account_removed(self, login: str) -> None: ...
    async def sync(self, state: DesiredState) -> SyncReport: ...
    async def flush(self) -> None: ...
    async def close(self) -> None: ...


StateSource = Callable[[], Awaitable[DesiredState]]
