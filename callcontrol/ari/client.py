"""A thin, typed client for Asterisk's REST Interface (ARI).

One method per ARI operation the engine uses; each sends exactly one HTTP
request and returns a parsed model when Asterisk returns a body. The rules:

- Requests go over the client's own keep-alive HTTP/1.1 connections
  (`http.py`: a request costs the engine a fraction of an aiohttp one, and a
  forwarded call makes seven or eight). `close()` closes the idle ones; a
  connection idle for 10 s is not reused anyway. The `aiohttp.ClientSession`
  the constructor takes is the caller's (it carries the events WebSocket).
- Every failure becomes an `AriRequestError` subclass (see `errors.py`):
  4xx by status, 5xx / connection failure / timeout as `AriUnavailable`.
  Nothing aiohttp-specific escapes.
- Each request has a timeout (`request_timeout_s`, default 5 s). After a
  timeout the operation may still have happened in Asterisk; callers that
  create things (channels, bridges) pass their own ids, so a retry with the
  same id gets `AriConflict` instead of a duplicate.
- A 404 on a channel operation means the channel is already gone (hung up).
  `hangup()` treats that as success and returns False; every other method
  raises `AriNotFound` and leaves the decision to the engine.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp
from pydantic import BaseModel, TypeAdapter, ValidationError

from callcontrol.ari.errors import (
    AriNotFound,
    AriProtocolError,
    AriUnavailable,
    error_for_status,
)
from callcontrol.ari.http import HttpConnectionPool
from callcontrol.ari.models import (
    Application,
    AsteriskInfo,
    Bridge,
    Channel,
    LiveRecording,
    Playback,
)

__all__ = ["AriClient"]

_ModelT = TypeVar("_ModelT", bound=BaseModel)
_CHANNEL_LIST: TypeAdapter[list[Channel]] = TypeAdapter(list[Channel])
_BRIDGE_LIST: TypeAdapter[list[Bridge]] = TypeAdapter(list[Bridge])
Params = dict[str, str]


def basic_auth_header(username: str, password: str) -> str:
    """The `Authorization` header value for HTTP basic auth (computed once per client)."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


_PLAIN = re.compile(r"[A-Za-z0-9._~-]*")
_LATENCY_WEIGHT = 0.05
"""Of each request in ``AriClient.latency_s``: the average follows about the last 40."""


def _seg(value: str) -> str:
    """Quote one path segment (ids are ours or Asterisk's, but never trust a '/')."""
    return value if _PLAIN.fullmatch(value) else quote(value, safe="")


def _value(value: str) -> str:
    """Quote one query value (ids and names are usually plain; media URIs are not)."""
    return value if _PLAIN.fullmatch(value) else quote(value, safe="")


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _asterisk_message(body: bytes, fallback: str) -> str:
    """Asterisk explains errors as `{"message": "..."}`; fall back to the raw text."""
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return text[:300] or fallback
    message = data.get("message") if isinstance(data, dict) else None
    return message if isinstance(message, str) else fallback


class AriClient:
    """REST calls to one Asterisk for one Stasis application."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        username: str,
        password: str,
        app: str,
        *,
        request_timeout_s: float = 5.0,
        file_timeout_s: float = 30.0,
        max_connections: int = 100,
    ) -> None:
        # REST goes through our own keep-alive connections (`http.py`), which cost
        # a fraction of an aiohttp request; the session stays the caller's, for
        # the events WebSocket.
        self._session = session
        base = base_url.rstrip("/")
        self._pool = HttpConnectionPool(base, max_connections=max_connections)
        self._prefix = (urlsplit(base).path or "") + "/ari"
        self._app = app
        self._head_end = (
            f" HTTP/1.1\r\nHost: {self._pool.host_header}\r\n"
            f"Authorization: {basic_auth_header(username, password)}\r\n"
        )
        self._timeout_s = request_timeout_s
        self._file_timeout_s = file_timeout_s
        self.in_flight = 0
        """REST requests sent and not yet answered (Asterisk's backlog, as we see it)."""
        self.latency_s = 0.0
        """Moving average of the REST round trip (how responsive Asterisk is now)."""

    @property
    def app(self) -> str:
        return self._app

    async def close(self) -> None:
        """Close the idle REST connections (those in use close when their request ends)."""
        await self._pool.close()

    # -- plumbing -----------------------------------------------------------

    def _encode(
        self, method: str, path: str, params: Params | None, body: Mapping[str, Any] | None
    ) -> bytes:
        target = self._prefix + path
        if params:
            target += "?" + "&".join(f"{key}={_value(value)}" for key, value in params.items())
        head = method + " " + target + self._head_end
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
            return head.encode() + data
        if method == "GET":
            return (head + "\r\n").encode()
        return (head + "Content-Length: 0\r\n\r\n").encode()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> bytes:
        """Send one request; return the body of a 2xx answer, else raise a typed error."""
        timeout = timeout_s or self._timeout_s
        request = self._encode(method, path, params, body)
        started = time.monotonic()
        self.in_flight += 1
        try:
            status, reason, data = await self._pool.request(method, request, timeout)
        except TimeoutError:
            raise AriUnavailable(method, path, None, f"no answer within {timeout} s") from None
        except OSError as exc:
            raise AriUnavailable(method, path, None, f"{type(exc).__name__}: {exc}") from None
        finally:
            self.in_flight -= 1
            if timeout_s is None:  # not a file download: a measure of Asterisk's pace
                took = time.monotonic() - started
                self.latency_s += (took - self.latency_s) * _LATENCY_WEIGHT
        if 200 <= status < 300:
            return data
        raise error_for_status(method, path, status, _asterisk_message(data, reason))

    async def _model(
        self,
        model: type[_ModelT],
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> _ModelT:
        data = await self._request(method, path, params=params, body=body)
        try:
            return model.model_validate_json(data)
        except ValidationError as exc:
            raise AriProtocolError(
                f"{method} {path}: unexpected {model.__name__} body: {exc.error_count()} errors",
                data,
            ) from None

    # -- channels -----------------------------------------------------------

    async def answer(self, channel_id: str) -> None:
        await self._request("POST", f"/channels/{_seg(channel_id)}/answer")

    async def ring(self, channel_id: str) -> None:
        """Indicate ringing (SIP 180) to the caller."""
        await self._request("POST", f"/channels/{_seg(channel_id)}/ring")

    async def ring_stop(self, channel_id: str) -> None:
        await self._request("DELETE", f"/channels/{_seg(channel_id)}/ring")

    async def progress(self, channel_id: str) -> None:
        """Indicate call progress (SIP 183, early media) to the caller."""
        await self._request("POST", f"/channels/{_seg(channel_id)}/progress")

    async def hangup(
        self,
        channel_id: str,
        reason: str | None = None,
        reason_code: int | None = None,
        *,
        missing_ok: bool = True,
    ) -> bool:
        """Hang up a channel with a Q.850 `reason_code` or an ARI `reason` (not both).

        Returns True if Asterisk hung it up, False if it was already gone (404)
        and `missing_ok` is true (the default); with `missing_ok=False` a 404
        raises `AriNotFound`.
        """
        if reason is not None and reason_code is not None:
            raise ValueError("give either reason or reason_code, not both")
        params: Params = {}
        if reason is not None:
            params["reason"] = reason
        elif reason_code is not None:
            params["reason_code"] = str(reason_code)
        try:
            await self._request("DELETE", f"/channels/{_seg(channel_id)}", params=params)
        except AriNotFound:
            if missing_ok:
                return False
            raise
        return True

    async def play(
        self,
        channel_id: str,
        media: str | Sequence[str],
        playback_id: str,
        *,
        lang: str | None = None,
    ) -> Playback:
        """Play one media URI, or several in a row (e.g. `sound:/abs/path/without/ext`)."""
        params: Params = {"media": media if isinstance(media, str) else ",".join(media)}
        if lang is not None:
            params["lang"] = lang
        path = f"/channels/{_seg(channel_id)}/play/{_seg(playback_id)}"
        return await self._model(Playback, "POST", path, params=params)

    async def stop_playback(self, playback_id: str) -> None:
        await self._request("DELETE", f"/playbacks/{_seg(playback_id)}")

    async def get_playback(self, playback_id: str) -> Playback:
        """A playback still queued or playing (`AriNotFound` once it is over)."""
        return await self._model(Playback, "GET", f"/playbacks/{_seg(playback_id)}")

    async def create_channel(
        self,
        endpoint: str,
        channel_id: str,
        originator: str | None = None,
        app_args: str | None = None,
        variables: Mapping[str, str] | None = None,
        formats: str | None = None,
    ) -> Channel:
        """Create (not yet dial) an outbound channel in our application.

        `variables` (e.g. `CALLERID(num)`, `PJSIP_HEADER(add,X-Foo)`) are sent in
        the JSON body. Dial it afterwards with `dial()`.
        """
        params: Params = {"endpoint": endpoint, "app": self._app, "channelId": channel_id}
        if originator is not None:
            params["originator"] = originator
        if app_args is not None:
            params["appArgs"] = app_args
        if formats is not None:
            params["formats"] = formats
        body = {"variables": dict(variables)} if variables else None
        return await self._model(Channel, "POST", "/channels/create", params=params, body=body)

    async def dial(
        self, channel_id: str, caller: str | None = None, timeout_s: int | None = None
    ) -> None:
        """Dial a channel made by `create_channel`.

        `caller`: the inbound channel (its connected line and hang-up are linked);
        `timeout_s`: ring time in seconds, 0 or None for no limit.
        """
        params: Params = {}
        if caller is not None:
            params["caller"] = caller
        if timeout_s is not None:
            params["timeout"] = str(timeout_s)
        await self._request("POST", f"/channels/{_seg(channel_id)}/dial", params=params)

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
    ) -> Channel:
        """Create and dial a channel in one step; it enters our application when answered."""
        params: Params = {"endpoint": endpoint, "app": self._app, "channelId": channel_id}
        optional = {
            "appArgs": app_args,
            "callerId": caller_id,
            "timeout": None if timeout_s is None else str(timeout_s),
            "originator": originator,
            "formats": formats,
        }
        params.update({key: value for key, value in optional.items() if value is not None})
        body = {"variables": dict(variables)} if variables else None
        return await self._model(Channel, "POST", "/channels", params=params, body=body)

    async def originate_to_dialplan(
        self, endpoint: str, *, context: str, extension: str, timeout_s: int = 10
    ) -> None:
        """Dial ``endpoint`` and, once it answers, run ``extension@context`` (not our
        application: the channel is never ours, we get none of its events)."""
        params: Params = {
            "endpoint": endpoint, "context": context, "extension": extension, "priority": "1",
            "timeout": str(timeout_s),
        }  # fmt: skip
        await self._request("POST", "/channels", params=params)

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        params: Params = {"variable": name, "value": value}
        await self._request("POST", f"/channels/{_seg(channel_id)}/variable", params=params)

    async def get_channel(self, channel_id: str) -> Channel:
        return await self._model(Channel, "GET", f"/channels/{_seg(channel_id)}")

    async def list_channels(self) -> list[Channel]:
        """All channels in Asterisk (not only ours); filter on `dialplan.app_data` or ids."""
        return await self._list(_CHANNEL_LIST, "/channels")

    async def _list(self, adapter: TypeAdapter[list[_ModelT]], path: str) -> list[_ModelT]:
        data = await self._request("GET", path)
        try:
            return adapter.validate_json(data)
        except ValidationError as exc:
            raise AriProtocolError(
                f"GET {path}: unexpected body: {exc.error_count()} errors", data
            ) from None

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
    ) -> LiveRecording:
        """Start recording; the file lands in Asterisk's recording spool as `name.format`."""
        params: Params = {
            "name": name,
            "format": format,
            "maxDurationSeconds": str(max_duration_seconds),
            "maxSilenceSeconds": str(max_silence_seconds),
            "beep": _flag(beep),
            "ifExists": if_exists,
            "terminateOn": terminate_on,
        }
        path = f"/channels/{_seg(channel_id)}/record"
        return await self._model(LiveRecording, "POST", path, params=params)

    async def continue_in_dialplan(
        self,
        channel_id: str,
        context: str | None = None,
        extension: str | None = None,
        priority: int | None = None,
        label: str | None = None,
    ) -> None:
        """Leave our application and go on in the dialplan (next priority by default)."""
        optional = {
            "context": context,
            "extension": extension,
            "priority": None if priority is None else str(priority),
            "label": label,
        }
        params: Params = {key: value for key, value in optional.items() if value is not None}
        await self._request("POST", f"/channels/{_seg(channel_id)}/continue", params=params)

    # -- bridges ------------------------------------------------------------

    async def create_bridge(
        self, bridge_id: str, type: str = "mixing", name: str | None = None
    ) -> Bridge:
        """Create a bridge; its name is our app's unless given, so `list_bridges`
        can tell ours from those of other applications on the same Asterisk."""
        params: Params = {"type": type, "bridgeId": bridge_id, "name": name or self._app}
        return await self._model(Bridge, "POST", "/bridges", params=params)

    async def list_bridges(self) -> list[Bridge]:
        """All bridges in Asterisk (filter on `name` for ours)."""
        return await self._list(_BRIDGE_LIST, "/bridges")

    async def add_channel(self, bridge_id: str, channels: Sequence[str]) -> None:
        params: Params = {"channel": ",".join(channels)}
        await self._request("POST", f"/bridges/{_seg(bridge_id)}/addChannel", params=params)

    async def remove_channel(self, bridge_id: str, channels: Sequence[str]) -> None:
        params: Params = {"channel": ",".join(channels)}
        await self._request("POST", f"/bridges/{_seg(bridge_id)}/removeChannel", params=params)

    async def destroy_bridge(self, bridge_id: str) -> None:
        await self._request("DELETE", f"/bridges/{_seg(bridge_id)}")

    # -- recordings ---------------------------------------------------------

    async def get_stored_recording_file(self, name: str) -> bytes:
        """The finished recording's bytes (uses `file_timeout_s`, not the request timeout)."""
        path = f"/recordings/stored/{_seg(name)}/file"
        return await self._request("GET", path, timeout_s=self._file_timeout_s)

    async def delete_stored_recording(self, name: str) -> None:
        await self._request("DELETE", f"/recordings/stored/{_seg(name)}")

    async def get_live_recording(self, name: str) -> LiveRecording:
        """A recording in progress (`AriNotFound` once it has ended)."""
        return await self._model(LiveRecording, "GET", f"/recordings/live/{_seg(name)}")

    async def stop_live_recording(self, name: str) -> None:
        """Stop and keep the recording (RecordingFinished follows)."""
        await self._request("POST", f"/recordings/live/{_seg(name)}/stop")

    # -- applications, asterisk ---------------------------------------------

    async def set_event_filter(
        self, allowed: Sequence[str] | None = None, disallowed: Sequence[str] | None = None
    ) -> Application:
        """Set which event types Asterisk sends to our application.

        A list given replaces that filter (an empty list clears it); a list left
        as None is not changed, unless both are None, which clears both.
        """
        body: dict[str, list[dict[str, str]]] = {}
        if allowed is not None:
            body["allowed"] = [{"type": name} for name in allowed]
        if disallowed is not None:
            body["disallowed"] = [{"type": name} for name in disallowed]
        path = f"/applications/{_seg(self._app)}/eventFilter"
        return await self._model(Application, "PUT", path, body=body)

    async def get_application(self) -> Application:
        return await self._model(Application, "GET", f"/applications/{_seg(self._app)}")

    async def get_global_variable(self, name: str) -> str:
        """A global dialplan variable ('' when unset)."""
        data = await self._request("GET", "/asterisk/variable", params={"variable": name})
        try:
            value = json.loads(data).get("value", "")
        except (ValueError, AttributeError):
            raise AriProtocolError("GET /asterisk/variable: unexpected body", data) from None
        return value if isinstance(value, str) else ""

    async def set_global_variable(self, name: str, value: str) -> None:
        params: Params = {"variable": name, "value": value}
        await self._request("POST", "/asterisk/variable", params=params)

    async def info(self) -> AsteriskInfo:
        return await self._model(AsteriskInfo, "GET", "/asterisk/info")
