"""Routes ARI events to calls, starts new calls, and reconciles with Asterisk.

``on_event`` is called synchronously by the event stream, in Asterisk's order;
it never awaits, so ordering per channel is kept by each call's queue. A
``StasisStart`` with a direction (``contract.CALL_DIRECTIONS``) as first
argument starts a call; any other event is handed to the call that owns its
channel, or dropped.

Reconciliation (``reconcile``) compares what Asterisk holds with what the
engine follows. It runs after every (re)connection - in the background: the
event stream is never held up by it - and every ``watchdog_s`` as the calls'
watchdog. The rules it keeps:

- it lists our application's channels, all channels and all bridges (three
  requests), then waits ``settle_s`` so that calls whose ``StasisStart`` raced
  the listing are started first: a channel that entered Stasis after the
  listing is never treated as an orphan;
- a call the engine follows whose channels are gone (their ending was lost
  with the event stream) is told so, and ends with its CDR;
- a call Asterisk holds that no runner follows (the engine restarted, another
  engine went away, events were lost) is adopted: routed again from its
  caller channel (or, if the caller is gone, from a leg's Stasis arguments)
  and handed what Asterisk still holds of it (``ObservedCall``); at most
  ``adopt_concurrency`` adoptions run at once;
- a bridge of ours (named after our application) that no call owns is destroyed;
- ``release_all`` (another engine took the application) stops following every
  call without touching it: the new owner adopts them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from callcontrol.ari import events as ari
from callcontrol.ari.errors import AriError, AriNotFound
from callcontrol.ari.models import Bridge, Channel
from callcontrol.domain import call_events as ev
from callcontrol.domain import contract
from callcontrol.domain.shedding import IntakeLag
from callcontrol.engine.call_runner import CallRunner
from callcontrol.engine.ports import AriPort
from callcontrol.engine.routers import DirectionRouter
from callcontrol.engine.supervisor import TaskSupervisor
from callcontrol.engine.translate import channel_of

log = structlog.get_logger(__name__)

NewRunner = Callable[..., CallRunner]
"""``(start, index, *, adopt=None, call_id=None) -> CallRunner``"""

FORGET_FINISHED_S = 120.0
"""How long a finished call's channels are not taken for orphans."""
LAG_AFTER_CONNECT_S = 3.0
"""New calls of the first seconds after a (re)connection are not Stasis-lag samples."""


@dataclass
class _Orphan:
    """A call Asterisk holds that no runner follows."""

    caller: Channel | None = None
    legs: dict[int, Channel] = field(default_factory=dict)


class Dispatcher:
    def __init__(
        self,
        *,
        ari_client: AriPort,
        new_runner: NewRunner,
        calls: TaskSupervisor,
        settle_s: float = 0.5,
        adopt_concurrency: int = 8,
    ) -> None:
        self._ari = ari_client
        self._new_runner = new_runner
        self._calls = calls
        self._settle_s = settle_s
        self._adopting = asyncio.Semaphore(adopt_concurrency)
        self.by_channel: dict[str, CallRunner] = {}
        self._tasks: dict[CallRunner, asyncio.Task[None]] = {}
        self._finished: dict[str, float] = {}
        """Call keys of calls that ended lately -> when (monotonic)."""
        self._vanished: dict[str, float] = {}
        """Channels that left Stasis while no runner owned them -> when."""
        self._reconciling: asyncio.Task[None] | None = None
        self.stasis_lag: IntakeLag | None = None
        """Fed with every new call's StasisStart (admission control reads it)."""
        self.events_received = 0
        self.calls_started = 0
        self.calls_adopted = 0
        self.bridges_destroyed = 0

    @property
    def active_calls(self) -> int:
        return len(self._tasks)

    # ---- events ---------------------------------------------------------------------
    def on_event(self, event: ari.AriEvent) -> None:
        self.events_received += 1
        if isinstance(event, ari.StasisStart) and DirectionRouter.handles(event):
            if self.stasis_lag is not None:
                self.stasis_lag.observe(event.channel.creationtime.timestamp())
            if event.channel.id not in self.by_channel:
                self._spawn(self._new_runner(event, self.by_channel))
                self.calls_started += 1
            return
        channel = channel_of(event)
        if channel is None:
            return
        runner = self.by_channel.get(channel)
        if runner is not None:
            runner.on_ari_event(channel, event)
        elif isinstance(event, ari.StasisStart) and event.args[:1] == (contract.ARG_LEG,):
            # A leg answered whose call nobody follows (it ended, or an adoption
            # is about to take it): give the adoption a moment, then end it.
            self._calls.spawn(self._end_stray_leg(channel), name=f"stray-{channel}")
        elif isinstance(event, ari.StasisEnd | ari.ChannelDestroyed):
            self._vanished[channel] = time.monotonic()

    def _spawn(self, runner: CallRunner) -> None:
        self._tasks[runner] = self._calls.spawn(self._follow(runner), name=f"call-{runner.call_id}")

    async def _follow(self, runner: CallRunner) -> None:
        try:
            await runner.run()
        finally:
            self._tasks.pop(runner, None)
            if not runner.released:  # a released call is not over: it may come back to us
                self._finished[contract.safe_id(runner.call_id)] = time.monotonic()

    async def _end_stray_leg(self, channel_id: str) -> None:
        await asyncio.sleep(self._settle_s * 4)
        if channel_id in self.by_channel:
            return
        try:
            await self._ari.hangup(channel_id, reason_code=contract.CAUSE_NORMAL_CLEARING)
        except AriError as exc:
            log.warning("stray_leg_hangup_failed", channel_id=channel_id, error=str(exc))

    # ---- connection, takeover ---------------------------------------------------------
    def connected(self) -> None:
        """The event stream is (re)connected: reconcile in the background."""
        # Calls that waited in the dialplan's Stasis retries while no engine was
        # connected arrive now, seconds after their channel was made: not a lag.
        if self.stasis_lag is not None:
            self.stasis_lag.ignore_for(LAG_AFTER_CONNECT_S)
        if self._reconciling is not None and not self._reconciling.done():
            self._reconciling.cancel()
        self._reconciling = self._calls.spawn(self.reconcile(), name="reconcile")

    def release_all(self) -> None:
        """Another engine owns the application now: stop following, touch nothing."""
        released = 0
        for runner, task in list(self._tasks.items()):
            if runner.finishing:
                continue  # its CDR is being stored: let it be
            runner.release()
            task.cancel()
            released += 1
        log.warning("calls_released", count=released)

    async def watch(self, interval_s: float, *, serving: Callable[[], bool]) -> None:
        """The calls' watchdog: reconcile every ``interval_s`` (run as a job) while
        ``serving`` (connected, holding the app's lease): a standby must never
        adopt the active engine's calls."""
        while True:
            await asyncio.sleep(interval_s)
            if not serving():
                continue
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconcile_failed")

    # ---- reconciliation ---------------------------------------------------------------
    async def reconcile(self) -> None:
        listed_before = time.monotonic()
        try:
            app, channels, bridges = await asyncio.gather(
                self._ari.get_application(), self._ari.list_channels(), self._ari.list_bridges()
            )
        except AriError as exc:
            log.warning("reconcile_listing_failed", error=str(exc))
            return
        await asyncio.sleep(self._settle_s)
        self._forget_old()
        now = datetime.now(UTC)
        exists = {channel.id for channel in channels}
        for runner in list(self._tasks):
            runner.reconcile(exists, listed_before, now)
        ours = set(app.channel_ids)
        orphans = self._orphans([c for c in channels if c.id in ours])
        mine = [b for b in bridges if b.name == self._ari.app or b.id in app.bridge_ids]
        owned = {contract.safe_id(r.call_id) for r in self._tasks} | set(orphans)
        for bridge in mine:
            if contract.call_key_of_bridge(bridge.id) not in owned:
                self._calls.spawn(self._destroy_bridge(bridge.id), name=f"bridge-{bridge.id}")
        bridge_of = {contract.call_key_of_bridge(b.id): b for b in mine}
        for key, orphan in orphans.items():
            self._calls.spawn(self._adopt(key, orphan, bridge_of.get(key)), name=f"adopt-{key}")
        if orphans:
            log.warning("reconcile_adopting", calls=len(orphans))

    def _forget_old(self) -> None:
        horizon = time.monotonic() - FORGET_FINISHED_S
        for table in (self._finished, self._vanished):
            for key in [k for k, when in table.items() if when < horizon]:
                del table[key]

    def _orphans(self, channels: list[Channel]) -> dict[str, _Orphan]:
        followed = {contract.safe_id(r.call_id) for r in self._tasks}
        orphans: dict[str, _Orphan] = {}
        for channel in channels:
            if channel.id in self.by_channel or channel.id in self._vanished:
                continue
            leg = contract.parse_leg_channel_id(channel.id)
            key = leg.call_key if leg else contract.safe_id(channel.id)
            if key in followed or key in self._finished:
                continue
            orphan = orphans.setdefault(key, _Orphan())
            if leg is None:
                orphan.caller = channel
            else:
                orphan.legs[leg.position] = channel
        return orphans

    async def _destroy_bridge(self, bridge_id: str) -> None:
        try:
            await self._ari.destroy_bridge(bridge_id)
            self.bridges_destroyed += 1
            log.info("orphan_bridge_destroyed", bridge_id=bridge_id)
        except AriNotFound:
            pass
        except AriError as exc:
            log.warning("orphan_bridge_destroy_failed", bridge_id=bridge_id, error=str(exc))

    async def _adopt(self, key: str, orphan: _Orphan, bridge: Bridge | None) -> None:
        async with self._adopting:
            try:
                start, call_id = self._start_of(key, orphan)
                if start is None:
                    await self._end_unknown(orphan)
                    return
                seen = await self._observe(orphan, bridge)
            except AriError as exc:
                log.warning("adoption_failed", call_key=key, error=str(exc))
                return
            if any(c.id in self.by_channel for c in self._channels(orphan)):
                return  # a runner took it meanwhile
            self.calls_adopted += 1
            self._spawn(self._new_runner(start, self.by_channel, adopt=seen, call_id=call_id))

    def _start_of(self, key: str, orphan: _Orphan) -> tuple[ari.StasisStart | None, str]:
        """The StasisStart the call's caller channel had (or one rebuilt from a leg)."""
        app = self._ari.app
        if orphan.caller is not None:
            args = contract.stasis_args(app, orphan.caller.dialplan.app_data)
            if not args or args[0] not in contract.CALL_DIRECTIONS:
                return None, key
            return _stasis_start(app, orphan.caller, args), orphan.caller.id
        for leg in orphan.legs.values():
            args = contract.stasis_args(app, leg.dialplan.app_data)
            if args and args[0] == contract.ARG_LEG and len(args) >= 3:
                # The caller is gone: its number is the leg's connected line.
                caller = leg.model_copy(update={"id": key, "caller": leg.connected})
                return _stasis_start(app, caller, args[1:]), key
        return None, key

    async def _observe(self, orphan: _Orphan, bridge: Bridge | None) -> ev.ObservedCall:
        now = datetime.now(UTC)
        caller = orphan.caller
        if caller is not None and caller.id in self._vanished:
            caller = None
        legs = {p: c for p, c in orphan.legs.items() if c.id not in self._vanished}
        bridged_position: int | None = None
        if bridge is not None:
            for channel_id in bridge.channels:
                ref = contract.parse_leg_channel_id(channel_id)
                if ref is not None and ref.position in legs:
                    bridged_position = ref.position
        caller_up = caller is not None and caller.state == "Up"
        playing, recording = None, False
        if caller is not None and caller_up and bridge is None and not legs:
            playing, recording = await self._media_of(caller.id)
        return ev.ObservedCall(
            caller_present=caller is not None,
            caller_up=caller_up,
            legs=tuple(
                ev.ObservedLeg(
                    p, c.state == "Up" and c.dialplan.app_name == "Stasis", c.creationtime
                )
                for p, c in sorted(legs.items())
            ),
            bridged_position=bridged_position,
            bridged_at=bridge.creationtime if bridge is not None else None,
            playing=playing,
            recording=recording,
            at=now,
        )

    async def _media_of(self, call_id: str) -> tuple[str | None, bool]:
        """Which of the call's playbacks is still running, and whether it records."""
        playing = None
        for what in ("greeting", "vmgreeting"):
            playback = contract.playback_id(call_id, what)
            try:
                await self._ari.get_playback(playback)
                playing = playback
            except AriNotFound:
                pass
        try:
            await self._ari.get_live_recording(contract.recording_name(call_id))
            recording = True
        except AriNotFound:
            recording = False
        return playing, recording

    async def _end_unknown(self, orphan: _Orphan) -> None:
        """Channels in our application that say nothing of whose call they are."""
        for channel in self._channels(orphan):
            log.warning("orphan_channel_ended", channel_id=channel.id)
            await self._ari.hangup(channel.id, reason_code=contract.CAUSE_RETRY_ELSEWHERE)

    @staticmethod
    def _channels(orphan: _Orphan) -> list[Channel]:
        callers = [orphan.caller] if orphan.caller is not None else []
        return [*callers, *orphan.legs.values()]


def _observed_leg(position: int, channel: Channel) -> ev.ObservedLeg:
    # Answered means in Stasis: only from then on can the leg be bridged.
    answered = channel.state == "Up" and channel.dialplan.app_name == "Stasis"
    return ev.ObservedLeg(position, answered, channel.creationtime)


def _stasis_start(app: str, channel: Channel, args: tuple[str, ...]) -> ari.StasisStart:
    return ari.StasisStart(
        type="StasisStart",
        application=app,
        timestamp=channel.creationtime,
        channel=channel,
        args=args,
    )
