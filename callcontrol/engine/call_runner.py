"""One call: route it (a router per direction decides), then feed events to its machine.

The runner owns the call's event queue (so a channel's events are handled in
the order Asterisk sent them), its executor (timers, bridge) and the final
CDR write. Calls are independent: each runs in its own supervised task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from callcontrol.ari import events as ari
from callcontrol.domain import call_events as ev
from callcontrol.domain.inbound_call import InboundCall
from callcontrol.domain.routing import ForwardingPlan
from callcontrol.engine.executor import CallExecutor
from callcontrol.engine.ports import AriPort, CallLedger, VoicemailBox
from callcontrol.engine.routers import CallRouter
from callcontrol.engine.supervisor import TaskSupervisor
from callcontrol.engine.translate import caller_event, leg_event

log = structlog.get_logger(__name__)


class CallInbox:
    """The call's event queue: FIFO, one reader (the call's task), never full.

    An ``asyncio.Queue`` costs about 3 KB per call (three deques and an Event);
    a list and one waiter cost a tenth of that, and 5,000 calls are held up at once.
    """

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[ev.CallEvent] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: ev.CallEvent) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> ev.CallEvent:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class CallRunner:
    def __init__(
        self,
        *,
        start: ari.StasisStart,
        ari_client: AriPort,
        router: CallRouter,
        ledger: CallLedger,
        voicemail: VoicemailBox,
        jobs: TaskSupervisor,
        index: dict[str, CallRunner],
    ) -> None:
        self._start: ari.StasisStart | None = start
        """Until routed: the parsed event is most of a held call's memory (4 KB)."""
        self._caller_number = start.channel.caller.number or None
        self.call_id = start.channel.id
        self.started_at = start.timestamp
        self._ari = ari_client
        self._router = router
        self._ledger = ledger
        self._voicemail = voicemail
        self._jobs = jobs
        self._index = index
        self._queue = CallInbox()
        self._legs: dict[str, int] = {}
        self._record: ev.CallRecord | None = None
        self._voicemail_command: ev.SaveVoicemail | None = None
        self.machine: InboundCall | None = None
        self._executor: CallExecutor | None = None
        index[self.call_id] = self

    # ---- events from the dispatcher ---------------------------------------------
    def on_ari_event(self, channel_id: str, event: ari.AriEvent) -> None:
        position = self._legs.get(channel_id)
        if position is not None and isinstance(event, ari.StasisStart):
            # An originated leg enters Stasis when it answers; only from then on
            # can it be bridged, so this - not its state going Up a moment
            # before - is the answer.
            self._queue.put_nowait(ev.LegAnswered(position, event.timestamp))
            return
        if position is not None and isinstance(event, ari.ChannelStateChange):
            if event.channel.state == "Up":
                return  # its StasisStart follows
        if isinstance(event, ari.PlaybackFinished):
            playback = event.playback
            log.info(
                "playback_finished",
                call_id=self.call_id,
                playback_id=playback.id,
                media_uri=playback.media_uri,
                state=playback.state,
            )
        translated = caller_event(event) if position is None else leg_event(position, event)
        if translated is not None:
            self._queue.put_nowait(translated)

    # ---- the call's task -------------------------------------------------------------
    async def run(self) -> None:
        structlog.contextvars.bind_contextvars(call_id=self.call_id)
        executor: CallExecutor | None = None
        try:
            assert self._start is not None
            routed = await self._router.route(self._start)
            self._start = None
            structlog.contextvars.bind_contextvars(
                direction=routed.direction.value, number=routed.number
            )
            machine = InboundCall(
                call_id=self.call_id,
                did=routed.number,
                caller=routed.caller,
                decision=routed.decision,
                started_at=self.started_at,
                direction=routed.direction,
            )
            self.machine = machine
            executor = self._executor = CallExecutor(
                ari=self._ari,
                caller_channel_id=self.call_id,
                feed=self._queue.put_nowait,
                on_save_voicemail=self._save_voicemail,
                on_finish=self._on_finish,
                caller_number=self._caller_number,
            )
            for leg in machine.legs.values():
                self._legs[leg.channel_id] = leg.plan.position
                self._index[leg.channel_id] = self
            await executor.execute(machine.start())
            while not machine.done:
                event = await self._queue.get()
                await executor.execute(machine.handle(event))
            if self._record is not None:
                await self._ledger.record_call(self._record)
            if self._voicemail_command is not None:
                self._spawn_voicemail(self._voicemail_command)
        finally:
            if executor is not None:
                await executor.close()
            for channel_id in (self.call_id, *self._legs):
                self._index.pop(channel_id, None)
            structlog.contextvars.clear_contextvars()

    def _on_finish(self, finish: ev.Finish) -> None:
        self._record = finish.record

    def _save_voicemail(self, command: ev.SaveVoicemail) -> None:
        # Delivered after the CDR is stored, so the message can point at it.
        self._voicemail_command = command

    def _spawn_voicemail(self, command: ev.SaveVoicemail) -> None:
        plan = self.machine.decision if self.machine else None
        if not isinstance(plan, ForwardingPlan) or plan.number_id is None:
            return  # voicemail belongs to a number; an outbound call has none
        self._jobs.spawn(
            self._deliver_voicemail(plan, plan.number_id, command),
            name=f"voicemail-{self.call_id}",
        )

    async def _deliver_voicemail(
        self, plan: ForwardingPlan, number_id: int, command: ev.SaveVoicemail
    ) -> None:
        audio = await self._ari.get_stored_recording_file(command.recording_name)
        await self._voicemail.deliver(
            call_id=self.call_id,
            number_id=number_id,
            account_id=plan.account_id,
            did=plan.did,
            caller=self.machine.caller if self.machine else None,
            duration_s=command.duration_s,
            audio=audio,
        )
        await self._ari.delete_stored_recording(command.recording_name)


RunnerFactory = Callable[[ari.StasisStart], CallRunner]
