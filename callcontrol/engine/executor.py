"""Turns the core's commands into ARI requests for one call.

Every request that fails is reported back to the call as ``CommandFailed``
(``gone`` when Asterisk says the channel no longer exists), so the state
machine decides what a failure means. Hang-ups and playback stops of things
already gone are done, not failures. Timers are the call's own: they fire
``TimerFired`` into the call's queue.

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
caller channel's CallerID is set to it first, once per call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from callcontrol.ari.errors import AriError, AriNotFound
from callcontrol.domain import call_events as ev
from callcontrol.engine.ports import AriPort

log = structlog.get_logger(__name__)


class CallExecutor:
    def __init__(
        self,
        *,
        ari: AriPort,
        caller_channel_id: str,
        feed: Callable[[ev.CallEvent], None],
        on_save_voicemail: Callable[[ev.SaveVoicemail], None],
        on_finish: Callable[[ev.Finish], None],
        caller_number: str | None = None,
    ) -> None:
        self._ari = ari
        self._caller = caller_channel_id
        self._caller_number = caller_number
        self._caller_presented: tuple[str | None, bool] | None = None
        self._feed = feed
        self._save_voicemail = on_save_voicemail
        self._finish = on_finish
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.bridge_id: str | None = None

    async def execute(self, commands: list[ev.Command]) -> None:
        for command in commands:
            try:
                await self._one(command)
            except AriNotFound as exc:
                if not isinstance(command, ev.HangupLeg | ev.HangupCaller | ev.StopPlayback):
                    self._failed(command, exc, gone=True)
            except AriError as exc:
                self._failed(command, exc, gone=False)

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
                await ari.create_bridge(bridge_id, "mixing")
                self.bridge_id = bridge_id
                await ari.add_channel(bridge_id, [caller, leg])
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
                self._save_voicemail(command)
            case ev.Finish():
                self._finish(command)

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
            app_args="leg",
            # Asterisk's own dial timeout is a safety net; the call's timer decides.
            timeout_s=command.timeout_s + 5,
            originator=self._caller,
        )

    def _start_timer(self, name: str, seconds: float) -> None:
        old = self._timers.pop(name, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(seconds, self._fire, name)

    def _fire(self, name: str) -> None:
        self._timers.pop(name, None)
        self._feed(ev.TimerFired(name, datetime.now(UTC)))

    async def close(self) -> None:
        """Cancel timers and remove the call's bridge, if any."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self.bridge_id is not None:
            try:
                await self._ari.destroy_bridge(self.bridge_id)
            except AriError:
                pass
            self.bridge_id = None
