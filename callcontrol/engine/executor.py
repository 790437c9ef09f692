"""Turns the core's commands into ARI requests for one call.

Every request that fails is reported back to the call as ``CommandFailed``
(``gone`` when Asterisk says the channel no longer exists), so the state
machine decides what a failure means. Hang-ups and playback stops of things
already gone are done, not failures. A request Asterisk did not answer (a cut
connection, a 5xx) is sent once more when repeating it is safe
(``_REPEATABLE``); a hang-up Asterisk did not answer is
tried again (``HANGUP_RETRIES_S``) and, if it still fails, logged as an
error: the dispatcher's reconciliation ends that channel later. Timers are the
call's own: they fire ``TimerFired`` into the call's queue. ``Finish`` and
``SaveVoicemail`` are carried out here too, through the call's outbox.

The bridge's id is the call's (``contract.bridge_id``) and it is remembered
before it is created: a create that timed out but happened in Asterisk is
still destroyed when the call ends.

A leg is one request: ``POST /channels`` (originate) into our application,
with the caller as ``originator``. Asterisk creates the channel, subscribes
us to it and dials it at once; before it answers we get its state changes
(``Ringing``) and, if it fails, its ``ChannelDestroyed`` with the cause (17
busy, ...); when it answers it enters Stasis, so its ``StasisStart`` is the
answer (the runner reports it as ``LegAnswered``): from then on it can be
bridged. (``/channels/create`` + ``/dial`` cost two requests, and a dial
racing the leg's entry into Stasis got 409 under load.)

The originator's CallerID is copied onto the leg's connected line - what the
far end's From / P-Asserted-Identity are made of - so the leg needs no CallerID
variables of its own (each would be one more channel snapshot, and its JSON,
in Asterisk). When a leg must show something other than the caller's own id
(an outbound call presenting the rented number, or going out anonymous), the
caller channel's CallerID is set to it first, once per call. The one
variable a leg does get is the header counting our hops
(``contract.HOPS_HEADER``), which stops forwarding loops through the carrier.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from callcontrol.ari.errors import AriConflict, AriError, AriNotFound, AriUnavailable
from callcontrol.domain import call_events as ev
from callcontrol.domain.contract import HOPS_HEADER_VARIABLE
from callcontrol.engine.outbox import CallOutbox
from callcontrol.engine.ports import AriPort

log = structlog.get_logger(__name__)

HANGUP_RETRIES_S = (0.2, 1.0)
"""Pauses before trying a failed hang-up again."""
_HANGUPS = ev.HangupLeg | ev.HangupCaller
_REPEATABLE = (
    ev.Ring
    | ev.Progress
    | ev.Answer
    | ev.Play
    | ev.StopPlayback
    | ev.DialLeg
    | ev.Bridge
    | ev.LimitLeg
)
"""Requests safe to send again when Asterisk gave no answer (a cut connection, a
5xx): each is idempotent, or names what it creates by our own id, so a repeat
of one that did happen gets 409 - which then means done."""
REPEAT_AFTER_S = 0.2


class CallExecutor:
    def __init__(
        self,
        *,
        ari: AriPort,
        caller_channel_id: str,
        feed: Callable[[ev.CallEvent], None],
        outbox: CallOutbox,
        leg_args: str,
        caller_number: str | None = None,
    ) -> None:
        self._ari = ari
        self._caller = caller_channel_id
        self._caller_number = caller_number
        self._caller_presented: tuple[str | None, bool] | None = None
        self._feed = feed
        self._outbox = outbox
        self._leg_args = leg_args
        self._voicemail: ev.SaveVoicemail | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.bridge_id: str | None = None
        self.dialled_at: dict[str, float] = {}
        """Leg channel id -> when (``time.monotonic``) Asterisk had it."""
        self.finished = False
        """The call's Finish was carried out (its CDR handed to the ledger)."""

    async def execute(self, commands: list[ev.Command]) -> None:
        for command in commands:
            try:
                await self._once_more_if_unanswered(command)
            except AriNotFound as exc:
                if not isinstance(command, _HANGUPS | ev.StopPlayback):
                    self._failed(command, exc, gone=True)
            except AriError as exc:
                if isinstance(command, _HANGUPS):
                    await self._hangup_again(command, exc)
                else:
                    self._failed(command, exc, gone=False)

    async def _once_more_if_unanswered(self, command: ev.Command) -> None:
        try:
            await self._one(command)
        except AriUnavailable:
            if not isinstance(command, _REPEATABLE):
                raise
            await asyncio.sleep(REPEAT_AFTER_S)
            try:
                await self._one(command)
            except AriConflict:
                pass  # the first one happened after all

    async def _hangup_again(self, command: ev.HangupLeg | ev.HangupCaller, exc: AriError) -> None:
        for pause in HANGUP_RETRIES_S:
            await asyncio.sleep(pause)
            try:
                await self._one(command)
                return
            except AriNotFound:
                return
            except AriError as again:
                exc = again
        log.error("hangup_failed", command=type(command).__name__, error=str(exc))

    def _failed(self, command: ev.Command, exc: AriError, *, gone: bool) -> None:
        log.warning("ari_command_failed", command=type(command).__name__, error=str(exc))
        self._feed(ev.CommandFailed(command, gone, datetime.now(UTC)))

    async def _one(self, command: ev.Command) -> None:
        ari, caller = self._ari, self._caller
        match command:
            case ev.Ring():
                await ari.ring(caller)
            case ev.Progress():
                await ari.progress(caller)
            case ev.Answer():
                await ari.answer(caller)
            case ev.Play(playback_id=pid, media=media):
                await ari.play(caller, media, pid)
            case ev.StopPlayback(playback_id=pid):
                await ari.stop_playback(pid)
            case ev.DialLeg():
                await self._dial(command)
            case ev.HangupLeg(channel_id=channel_id, cause=cause):
                await ari.hangup(channel_id, reason_code=cause)
            case ev.HangupCaller(cause=cause):
                await ari.hangup(caller, reason_code=cause)
            case ev.Bridge(channel_id=leg, bridge_id=bridge_id):
                self.bridge_id = bridge_id  # before: a create that times out may still happen
                try:
                    await ari.create_bridge(bridge_id, "mixing")
                except AriConflict:
                    pass  # it exists: the call's own id, made by an attempt that did happen
                await ari.add_channel(bridge_id, [caller, leg])
            case ev.LimitLeg(channel_id=leg, seconds=seconds):
                await ari.set_variable(leg, "TIMEOUT(absolute)", str(seconds))
            case ev.StartTimer(name=name, seconds=seconds):
                self._start_timer(name, seconds)
            case ev.CancelTimer(name=name):
                handle = self._timers.pop(name, None)
                if handle is not None:
                    handle.cancel()
            case ev.Record():
                await ari.record(
                    caller,
                    command.name,
                    format="wav",
                    max_duration_seconds=command.max_seconds,
                    max_silence_seconds=command.max_silence_seconds,
                    beep=True,
                    if_exists="overwrite",
                )
            case ev.SaveVoicemail():
                self._voicemail = command  # delivered once the CDR is stored
            case ev.Finish(record=record):
                self.finished = True
                await self._outbox.finish(record, self._voicemail)

    async def _present_caller_as(self, command: ev.DialLeg) -> None:
        """Make the caller's CallerID the one the leg must show (see module notes)."""
        wanted = (command.caller_id, command.withhold_caller_id)
        if wanted == (self._caller_number, False) or wanted == self._caller_presented:
            return
        if command.withhold_caller_id:
            await self._ari.set_variable(self._caller, "CALLERID(all)", '"Anonymous" <anonymous>')
            await self._ari.set_variable(self._caller, "CALLERID(pres)", "prohib")
        else:
            number = command.caller_id or ""
            await self._ari.set_variable(self._caller, "CALLERID(all)", f'"" <{number}>')
            await self._ari.set_variable(self._caller, "CALLERID(pres)", "allowed")
        self._caller_presented = wanted

    async def _dial(self, command: ev.DialLeg) -> None:
        await self._present_caller_as(command)
        await self._ari.originate(
            command.endpoint,
            command.channel_id,
            app_args=self._leg_args,
            # Asterisk's own dial timeout is a safety net; the call's timer decides.
            timeout_s=command.timeout_s + 5,
            originator=self._caller,
            variables={HOPS_HEADER_VARIABLE: str(command.hops)},
        )
        self.dialled_at[command.channel_id] = time.monotonic()  # Asterisk has it now

    def _start_timer(self, name: str, seconds: float) -> None:
        old = self._timers.pop(name, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(seconds, self._fire, name)

    def _fire(self, name: str) -> None:
        self._timers.pop(name, None)
        self._feed(ev.TimerFired(name, datetime.now(UTC)))

    async def close(self, *, keep_bridge: bool = False) -> None:
        """Cancel timers and remove the call's bridge, if any (``keep_bridge``:
        the call was handed to another engine, which owns it now)."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self.bridge_id is not None and not keep_bridge:
            try:
                await self._ari.destroy_bridge(self.bridge_id)
            except AriError:
                pass
            self.bridge_id = None
