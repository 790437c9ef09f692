"""Routes ARI events to calls, starts new calls, and re-syncs after a reconnect.

``on_event`` is called synchronously by the event stream, in Asterisk's order;
it never awaits, so ordering per channel is kept by each call's queue. A
``StasisStart`` with ``inbound`` or ``outbound`` as first argument starts a call; any other
event is handed to the call that owns its channel, or dropped. (``outbound``
starts a call from a customer's SIP account the same way; the runner's router
tells the directions apart.)

After (re)connecting, channels still in our Stasis application that no running
call owns (the engine restarted mid-call) are hung up, and the caller's CDR is
written from what Asterisk still knows about the channel: no channel is left
hanging and no call goes unrecorded.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from callcontrol.ari import events as ari
from callcontrol.ari.errors import AriError
from callcontrol.ari.models import Channel
from callcontrol.domain import call_events as ev
from callcontrol.domain.routing import CAUSE_NORMAL_CLEARING
from callcontrol.domain.vocabulary import CallDirection, Disposition
from callcontrol.engine.call_runner import CallRunner
from callcontrol.engine.ports import AriPort, CallLedger
from callcontrol.engine.routers import CAUSE_TEMPORARY_FAILURE, DirectionRouter, normalise_did
from callcontrol.engine.supervisor import TaskSupervisor
from callcontrol.engine.translate import channel_of

log = structlog.get_logger(__name__)


class Dispatcher:
    def __init__(
        self,
        *,
        ari_client: AriPort,
        ledger: CallLedger,
        new_runner: Callable[[ari.StasisStart, dict[str, CallRunner]], CallRunner],
        calls: TaskSupervisor,
    ) -> None:
        self._ari = ari_client
        self._ledger = ledger
        self._new_runner = new_runner
        self._calls = calls
        self.by_channel: dict[str, CallRunner] = {}
        self.events_received = 0
        self.calls_started = 0

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    def on_event(self, event: ari.AriEvent) -> None:
        self.events_received += 1
        if isinstance(event, ari.StasisStart) and DirectionRouter.handles(event):
            if event.channel.id not in self.by_channel:
                self._start_call(event)
            return
        if isinstance(event, ari.ApplicationReplaced):
            log.error("ari_application_replaced")
            return
        channel = channel_of(event)
        if channel is None:
            return
        runner = self.by_channel.get(channel)
        if runner is not None:
            runner.on_ari_event(channel, event)
        elif isinstance(event, ari.StasisStart) and event.args[:1] == ("leg",):
            # A forwarded leg enters Stasis when it answers; one whose call has
            # ended (or died with an engine restart) will never be bridged.
            self._calls.spawn(self._end_stray_leg(channel), name=f"stray-{channel}")

    async def _end_stray_leg(self, channel_id: str) -> None:
        try:
            await self._ari.hangup(channel_id, reason_code=CAUSE_NORMAL_CLEARING)
        except AriError as exc:
            log.warning("stray_leg_hangup_failed", channel_id=channel_id, error=str(exc))

    def _start_call(self, event: ari.StasisStart) -> None:
        runner = self._new_runner(event, self.by_channel)
        self.calls_started += 1
        self._calls.spawn(runner.run(), name=f"call-{runner.call_id}")

    async def resync(self) -> None:
        """End channels left in our application that no running call owns."""
        try:
            app = await self._ari.get_application()
        except AriError as exc:
            log.warning("resync_failed", error=str(exc))
            return
        orphans = [cid for cid in app.channel_ids if cid not in self.by_channel]
        for channel_id in orphans:
            await self._end_orphan(channel_id)
        if orphans:
            log.warning("resync_ended_orphans", count=len(orphans))

    async def _end_orphan(self, channel_id: str) -> None:
        try:
            channel = await self._ari.get_channel(channel_id)
            await self._ari.hangup(channel_id, reason_code=CAUSE_TEMPORARY_FAILURE)
        except AriError:
            return  # gone meanwhile
        if "-leg" in channel_id:
            return  # a forwarded leg; its call's CDR is written for the caller
        await self._ledger.record_call(_interrupted_record(channel))


def _interrupted_record(channel: Channel) -> ev.CallRecord:
    # Outbound calls start in the SIP accounts' context (see the dialplan).
    outbound = channel.dialplan.context == "callcontrol-outbound"
    did = normalise_did(channel.dialplan.exten) or channel.dialplan.exten
    return ev.CallRecord(
        call_id=channel.id,
        direction=CallDirection.OUTBOUND if outbound else CallDirection.INBOUND,
        did=did,
        number_id=None,
        account_id=None,
        caller=channel.caller.number or None,
        started_at=channel.creationtime,
        answered_at=None,
        ended_at=datetime.now(UTC),
        disposition=Disposition.FAILED,
        cause=CAUSE_TEMPORARY_FAILURE,
        reject_reason="engine_restart",
        answered_position=None,
        ring_ms=0,
        talk_ms=0,
        legs=(),
    )
