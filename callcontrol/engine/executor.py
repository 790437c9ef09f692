"""Turns the core's commands into ARI requests for one call.

Every request that fails is reported back to the call as ``CommandFailed``
(``gone`` when Asterisk says the channel no longer exists), so the state
machine decides what a failure means. Hang-ups and playback stops of things
already gone are done, not failures. Timers are the call's own: they fire
``TimerFired`` into the call's queue.

Asterisk answers ``POST /channels/create`` before the new channel has entered
our Stasis application (a thread of its own puts it there); a ``dial`` sent in
between fails with 409 "Channel not in Stasis application" - under load, for
about one call in four. So a 409 on dial waits for the leg's ``StasisStart``
(the runner reports it: ``leg_entered_stasis``) and dials again; the usual
case costs no wait and no extra request.

A dial with a ``caller`` (kept: it also decrements Max-Forwards, the loop
guard) copies the caller's CallerID over the leg's connected line, which is
what the far end's From / P-Asserted-Identity are made of - whatever was set
on the leg at creation. So when a leg must show something other than the
caller's own id (an outbound call presenting the rented number, or going out
anonymous), the caller channel's CallerID is set to it first, once per call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from callcontrol.ari.errors import AriConflict, AriError, AriNotFound, AriUnavailable
from callcontrol.domain import call_events as ev
from callcontrol.engine.ports import AriPort

log = structlog.get_logger(__name__)

LEG_STASIS_TIMEOUT_S = 5.0


class CallExecutor:
    def __init__(
        self,
        *,
        ari: AriPort,
        caller_channel_id: str,
        feed: Callable[[ev.CallEvent], None],
        on_save_voicemail: Callable[[ev.SaveVoicemail], None],
        on_finish: Callable[[ev.Finish], None],
        caller_name: str | None = None,
        caller_number: str | None = None,
    ) -> None:
        self._ari = ari
        self._caller = caller_channel_id
        self._caller_name = caller_name
        self._caller_number = caller_number
        self._caller_presented: tuple[str | None, bool] | None = None
        self._in_stasis: dict[str, asyncio.Future[None]] = {}
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

    def leg_entered_stasis(self, channel_id: str) -> None:
        """The leg's ``StasisStart`` arrived: it may be dialled now."""
        waiting = self._in_stasis.get(channel_id)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    def _leg_variables(self, command: ev.DialLeg) -> dict[str, str]:
        """The far end's From / P-Asserted-Identity come from the leg's connected line."""
        if command.withhold_caller_id:
            # From: "Anonymous" <sip:anonymous@anonymous.invalid>, Privacy: id; the
            # caller's own id (a SIP login, say) must not leak through either.
            return {
                "CALLERID(num)": "anonymous",
                "CALLERID(name)": "Anonymous",
                "CALLERID(pres)": "prohib",
                "CONNECTEDLINE(num)": "anonymous",
                "CONNECTEDLINE(name)": "Anonymous",
                "CONNECTEDLINE(pres)": "prohib",
            }
        variables: dict[str, str] = {}
        if command.caller_id:
            variables["CALLERID(num)"] = command.caller_id
            variables["CONNECTEDLINE(num)"] = command.caller_id
            if self._caller_name:
                # With the caller's name too, bridging the leg with the caller
                # changes nothing, so Asterisk sends the far end no re-INVITE.
                variables["CALLERID(name)"] = self._caller_name
                variables["CONNECTEDLINE(name)"] = self._caller_name
        return variables

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
        variables = self._leg_variables(command)
        channel_id = command.channel_id
        # Registered before the request: the StasisStart may beat the response.
        entered = self._in_stasis[channel_id] = asyncio.get_running_loop().create_future()
        try:
            await self._ari.create_channel(
                command.endpoint,
                channel_id,
                originator=self._caller,
                app_args="leg",
                variables=variables or None,
            )
            # Asterisk's own dial timeout is a safety net; the call's timer decides.
            timeout_s = command.timeout_s + 5
            try:
                await self._ari.dial(channel_id, caller=self._caller, timeout_s=timeout_s)
            except AriConflict:
                await self._until_in_stasis(channel_id, entered)
                await self._ari.dial(channel_id, caller=self._caller, timeout_s=timeout_s)
        finally:
            del self._in_stasis[channel_id]

    async def _until_in_stasis(self, channel_id: str, entered: asyncio.Future[None]) -> None:
        try:
            async with asyncio.timeout(LEG_STASIS_TIMEOUT_S):
                await entered
        except TimeoutError:
            raise AriUnavailable(
                "POST", f"/channels/{channel_id}/dial", None, "leg never entered Stasis"
            ) from None

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
