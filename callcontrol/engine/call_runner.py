"""One call: route it (a router per direction decides), then feed events to its machine.

The runner owns the call's event queue (so a channel's events are handled in
the order Asterisk sent them) and its executor (timers, bridge, the outbox
that stores the CDR). Calls are independent: each runs in its own supervised
task. The rules it keeps:

- a new call starts its machine; an adopted one (``adopt=``: a call found in
  Asterisk that no runner followed) is routed the same way and then told what
  Asterisk still holds of it;
- any exception in the call's task ends the call through the machine's
  ``fail`` (503 for a caller not yet answered, a CDR all the same): no call is
  left in Stasis because the engine tripped over it;
- ``release()`` (another engine took the application over) stops following
  the call without touching it in Asterisk: the new owner adopts it.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import structlog

from callcontrol.ari import events as ari
from callcontrol.ari.models import Channel
from callcontrol.domain import call_events as ev
from callcontrol.domain import contract
from callcontrol.domain.inbound_call import InboundCall
from callcontrol.domain.vocabulary import CallDirection, Disposition
from callcontrol.engine.executor import CallExecutor
from callcontrol.engine.outbox import CallOutbox
from callcontrol.engine.ports import AriPort
from callcontrol.engine.routers import CallRouter, normalise_did
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
        outbox: CallOutbox,
        index: dict[str, CallRunner],
        adopt: ev.ObservedCall | None = None,
        call_id: str | None = None,
    ) -> None:
        self._start: ari.StasisStart | None = start
        """Until routed: the parsed event is most of a held call's memory (4 KB)."""
        self._adopt = adopt
        self._caller_number = start.channel.caller.number or None
        self.call_id = call_id or start.channel.id
        self.started_at = start.timestamp
        self._ari = ari_client
        self._router = router
        self._outbox = outbox
        self._index = index
        self._queue = CallInbox()
        # Both possible legs are known by id from the start (``contract``), so a
        # leg that answers while the call is still being routed is not a stray.
        self._legs = {contract.leg_channel_id(self.call_id, p): p for p in (1, 2)}
        self._released = False
        self._caller_channel = start.channel.id
        self.known_since = time.monotonic()
        self.machine: InboundCall | None = None
        self._executor: CallExecutor | None = None
        for channel_id in (self.call_id, *self._legs):
            index[channel_id] = self

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

    def feed(self, event: ev.CallEvent) -> None:
        """A fact the dispatcher learnt another way (its reconciliation with Asterisk)."""
        self._queue.put_nowait(event)

    @property
    def finishing(self) -> bool:
        """The call is over in the machine; its CDR is being stored."""
        return self.machine is not None and self.machine.done

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        """Stop following the call and leave it as it is in Asterisk."""
        self._released = True

    def reconcile(self, exists: set[str], listed_before: float, at: datetime) -> None:
        """Asterisk listed its channels (``exists``); ``listed_before`` is a moment
        (``time.monotonic``) before the listing was asked for. A channel of this
        call the engine knew before then and that is not listed is gone, and
        its ending was lost with the event stream."""
        machine, executor = self.machine, self._executor
        if machine is None or executor is None or machine.done:
            return
        if self.known_since < listed_before and self._caller_channel not in exists:
            self.feed(ev.CallerHungUp(contract.CAUSE_NORMAL_CLEARING, at))
        for leg in machine.legs.values():
            following = leg.live or (leg is machine.winner and leg.ended_at is None)
            dialled = executor.dialled_at.get(leg.channel_id, listed_before) < listed_before
            if following and dialled and leg.channel_id not in exists:
                self.feed(ev.LegEnded(leg.plan.position, contract.CAUSE_NORMAL_CLEARING, at))

    # ---- the call's task -------------------------------------------------------------
    async def run(self) -> None:
        structlog.contextvars.bind_contextvars(call_id=self.call_id)
        try:
            await self._route_and_follow()
        except asyncio.CancelledError:
            if not self._released:
                raise
        except Exception:
            log.exception("call_failed")
            await self._end_after_failure()
        finally:
            executor = self._executor
            if executor is not None:
                await executor.close(keep_bridge=self._released)
            for channel_id in (self.call_id, *self._legs):
                if self._index.get(channel_id) is self:
                    del self._index[channel_id]
            structlog.contextvars.clear_contextvars()

    async def _route_and_follow(self) -> None:
        start = self._start
        assert start is not None
        routed = await self._router.route(start)
        self._start = None
        structlog.contextvars.bind_contextvars(
            direction=routed.direction.value, number=routed.number
        )
        machine = self.machine = InboundCall(
            call_id=self.call_id,
            did=routed.number,
            caller=routed.caller,
            decision=routed.decision,
            started_at=self.started_at,
            direction=routed.direction,
        )
        executor = self._executor = CallExecutor(
            ari=self._ari,
            caller_channel_id=start.channel.id,
            feed=self._queue.put_nowait,
            outbox=self._outbox,
            leg_args=contract.leg_args(start.args[0], routed.number),
            caller_number=self._caller_number,
        )
        if self._adopt is None:
            await executor.execute(machine.start())
        else:
            if self._adopt.bridged_at is not None:
                executor.bridge_id = machine.bridge_id  # it exists: ours to destroy at the end
            for observed in self._adopt.legs:
                executor.dialled_at[contract.leg_channel_id(self.call_id, observed.position)] = (
                    self.known_since
                )
            adopted, self._adopt = self._adopt, None
            log.info("call_adopted", bridged=adopted.bridged_at is not None)
            await executor.execute(machine.adopt(adopted))
        while not machine.done:
            event = await self._queue.get()
            await executor.execute(machine.handle(event))

    async def _end_after_failure(self) -> None:
        now = datetime.now(UTC)
        machine, executor = self.machine, self._executor
        try:
            if machine is not None and executor is not None and not executor.finished:
                await executor.execute(machine.fail(now))
            elif machine is None and self._start is not None:
                channel = self._start.channel
                await self._ari.hangup(channel.id, reason_code=contract.CAUSE_RETRY_ELSEWHERE)
                await self._outbox.finish(interrupted_record(self.call_id, channel, now), None)
        except Exception:
            log.exception("call_failed_cleanup_failed")


def interrupted_record(call_id: str, channel: Channel, at: datetime) -> ev.CallRecord:
    """The CDR of a call the engine could not follow, from what Asterisk said of
    its caller channel: direction by the dialplan context, the dialled number."""
    outbound = channel.dialplan.context == contract.OUTBOUND_CONTEXT
    did = normalise_did(channel.dialplan.exten) or channel.dialplan.exten
    return ev.CallRecord(
        call_id=call_id,
        direction=CallDirection.OUTBOUND if outbound else CallDirection.INBOUND,
        did=did,
        number_id=None,
        account_id=None,
        caller=channel.caller.number or None,
        started_at=channel.creationtime,
        answered_at=None,
        ended_at=at,
        disposition=Disposition.FAILED,
        cause=contract.CAUSE_RETRY_ELSEWHERE,
        reject_reason="engine_error",
        answered_position=None,
        ring_ms=0,
        talk_ms=0,
        legs=(),
    )
