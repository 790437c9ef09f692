"""Placing one reminder call through Asterisk: originate, play the notice, hang up.

The reminder calls live in their own ARI application (``<app><app_suffix>``,
e.g. ``callcontrol-reminders``) with their own events WebSocket, so the call
engine never sees them and they never pass through its routing, CDRs or
charges: a notice call costs the customer nothing. Rules kept here:

- the call goes to ``PJSIP/<phone>@<pstn endpoint>`` (the PSTN trunk) with the
  provider's number as CallerID, ringing at most ``ring_timeout_s``;
- answered (the channel enters our application) -> the notice is played in
  one request, then the call is hung up; the whole call is bounded by
  ``max_call_s``, after which it is hung up whatever happens;
- the result is whether it was answered and the Q.850 cause Asterisk gave
  when the channel went (busy 17, no answer 19 ...); a failed originate is a
  failure with no cause.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from callcontrol.ari.errors import AriError
from callcontrol.ari.events import AriEvent, ChannelDestroyed, PlaybackFinished, StasisStart
from callcontrol.ari.models import Channel, Playback

log = structlog.get_logger(__name__)


class ReminderAri(Protocol):
    async def originate(
        self, endpoint: str, channel_id: str, *, app_args: str | None = None,
        caller_id: str | None = None, timeout_s: int | None = None,
    ) -> Channel: ...  # fmt: skip

    async def play(
        self, channel_id: str, media: str | Sequence[str], playback_id: str
    ) -> Playback: ...

    async def hangup(self, channel_id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class CallResult:
    answered: bool
    cause: int | None
    played: bool = False  # the whole notice was played


class AriReminderCaller:
    def __init__(
        self, *, ari: ReminderAri, pstn_endpoint: str, caller_id: str, ring_timeout_s: int,
        max_call_s: int,
    ) -> None:  # fmt: skip
        self._ari = ari
        self._pstn = pstn_endpoint
        self._caller_id = caller_id
        self._ring_timeout_s = ring_timeout_s
        self._max_call_s = max_call_s
        self._calls: dict[str, asyncio.Queue[AriEvent]] = {}

    def on_event(self, event: AriEvent) -> None:
        """From the reminder application's event stream (in order, one loop)."""
        channel = getattr(event, "channel", None)
        if isinstance(event, PlaybackFinished):
            channel_id = event.playback.target_uri.removeprefix("channel:")
        elif isinstance(channel, Channel):
            channel_id = channel.id
        else:
            return
        queue = self._calls.get(channel_id)
        if queue is not None:
            queue.put_nowait(event)

    async def call(self, *, phone: str, channel_id: str, media: Sequence[str]) -> CallResult:
        queue: asyncio.Queue[AriEvent] = asyncio.Queue()
        self._calls[channel_id] = queue
        state = {"answered": False, "played": False}
        try:
            await self._ari.originate(
                f"PJSIP/{phone}@{self._pstn}", channel_id, app_args="reminder",
                caller_id=self._caller_id or None, timeout_s=self._ring_timeout_s,
            )  # fmt: skip
            async with asyncio.timeout(self._ring_timeout_s + self._max_call_s):
                cause = await self._follow(channel_id, queue, media, state)
            return CallResult(state["answered"], cause, state["played"])
        except TimeoutError:
            log.warning("reminder_call_timed_out", channel_id=channel_id)
            await self._hangup(channel_id)
            return CallResult(state["answered"], None, state["played"])
        except AriError as exc:
            log.warning("reminder_call_failed", channel_id=channel_id, error=str(exc))
            await self._hangup(channel_id)
            return CallResult(state["answered"], None, state["played"])
        finally:
            self._calls.pop(channel_id, None)

    async def _follow(
        self, channel_id: str, queue: asyncio.Queue[AriEvent], media: Sequence[str],
        state: dict[str, bool],
    ) -> int:  # fmt: skip
        playback_id = f"{channel_id}-notice"
        while True:
            event = await queue.get()
            if isinstance(event, StasisStart) and not state["answered"]:
                state["answered"] = True
                log.info("reminder_call_answered", channel_id=channel_id)
                await self._ari.play(channel_id, list(media), playback_id)
            elif isinstance(event, PlaybackFinished) and event.playback.id == playback_id:
                state["played"] = event.playback.state == "done"
                await self._hangup(channel_id)
            elif isinstance(event, ChannelDestroyed):
                return event.cause

    async def _hangup(self, channel_id: str) -> None:
        try:
            await self._ari.hangup(channel_id)
        except AriError as exc:  # gone or unreachable: nothing more we can do for this call
            log.info("reminder_hangup_failed", channel_id=channel_id, error=str(exc))
