"""Our own thin ARI client: typed events, REST calls and the event WebSocket.

`parse_event` turns ARI JSON into frozen models once, at the edge;
`AriClient` makes REST calls and raises `errors.AriError` subclasses;
`AriEventStream` keeps the event WebSocket open and delivers events in order.
"""

from callcontrol.ari.client import AriClient
from callcontrol.ari.errors import (
    AriBadRequest,
    AriConflict,
    AriError,
    AriNotFound,
    AriProtocolError,
    AriRequestError,
    AriUnauthorized,
    AriUnavailable,
)
from callcontrol.ari.events import AriEvent, UnknownEvent, parse_event
from callcontrol.ari.stream import AriEventStream

__all__ = [
    "AriBadRequest",
    "AriClient",
    "AriConflict",
    "AriError",
    "AriEvent",
    "AriEventStream",
    "AriNotFound",
    "AriProtocolError",
    "AriRequestError",
    "AriUnauthorized",
    "AriUnavailable",
    "UnknownEvent",
    "parse_event",
]
