"""What the engine needs from the outside world, as Protocols.

The ARI client, the database repositories and the mailer satisfy these; tests
pass fakes. Nothing here knows about HTTP status codes or SQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from callcontrol.ari.models import Application, Bridge, Channel, LiveRecording, Playback
from callcontrol.domain.call_events import CallRecord
from callcontrol.domain.outbound import SipAccountFacts
from callcontrol.domain.rating import Rate
from callcontrol.domain.routing import NumberSnapshot


class AriPort(Protocol):
    """The subset of ``callcontrol.ari.AriClient`` the engine uses."""

    async def answer(self, channel_id: str) -> None: ...
    async def ring(self, channel_id: str) -> None: ...
    async def progress(self, channel_id: str) -> None: ...
    async def hangup(
        self,
        channel_id: str,
        reason: str | None = None,
        reason_code: int | None = None,
        *,
        missing_ok: bool = True,
    ) -> bool: ...
    async def play(
        self,
        channel_id: str,
        media: str | Sequence[str],
        playback_id: str,
        *,
        lang: str | None = None,
    ) -> Playback: ...
    async def stop_playback(self, playback_id: str) -> None: ...
    async def set_variable(self, channel_id: str, name: str, value: str) -> None: ...
    async def originate(
        self,
        endpoint: str,
        channel_id: str,
        *,
        app_args: str | None = None,
        caller_id: str | None = None,
        timeout_s: int | None = None,
        variables: Mapping[str, str] | None = None,
        originator: str | None = None,
        formats: str | None = None,
    ) -> Channel: ...
    async def create_bridge(
        self, bridge_id: str, type: str = "mixing", name: str | None = None
    ) -> Bridge: ...
    async def add_channel(self, bridge_id: str, channels: Sequence[str]) -> None: ...
    async def destroy_bridge(self, bridge_id: str) -> None: ...
    async def record(
        self,
        channel_id: str,
        name: str,
        format: str = "wav",
        max_duration_seconds: int = 0,
        max_silence_seconds: int = 0,
        beep: bool = False,
        if_exists: str = "fail",
        terminate_on: str = "none",
    ) -> LiveRecording: ...
    async def get_stored_recording_file(self, name: str) -> bytes: ...
    async def delete_stored_recording(self, name: str) -> None: ...
    async def get_channel(self, channel_id: str) -> Channel: ...
    async def get_application(self) -> Application: ...
    async def list_channels(self) -> list[Channel]: ...
    async def list_bridges(self) -> list[Bridge]: ...
    async def get_playback(self, playback_id: str) -> Playback: ...
    async def get_live_recording(self, name: str) -> LiveRecording: ...
    async def get_global_variable(self, name: str) -> str: ...
    async def set_global_variable(self, name: str, value: str) -> None: ...

    @property
    def app(self) -> str: ...


STALL_MARGIN_S = 1.0
"""A timer this much later than due: this process stood still (SIGSTOP, a frozen
VM, a blocked loop), so a deadline that fired is not the peer's fault."""


class LookupUnavailable(Exception):
    """A lookup refused at once or cut short: the database is away or too slow
    (``repositories/breaker.py``). The call gets 503; no traceback is logged."""


class NumberDirectory(Protocol):
    """Looks a DID up for the call path."""

    async def snapshot(self, did: str) -> NumberSnapshot | None: ...


class SipAccountDirectory(Protocol):
    """Looks a calling SIP account and its destination's rate up for outbound calls."""

    async def facts(self, login: str) -> SipAccountFacts | None: ...
    async def rate_for(self, digits: str) -> Rate | None: ...


class CallLedger(Protocol):
    """Stores a finished call's CDR and charges what it cost, exactly once."""

    async def record_call(self, record: CallRecord) -> None: ...


class VoicemailBox(Protocol):
    """Keeps a recorded message: file, database row, mail to the owner."""

    async def deliver(
        self,
        *,
        call_id: str,
        number_id: int,
        account_id: int | None,
        did: str,
        caller: str | None,
        duration_s: int,
        audio: bytes,
    ) -> None: ...
