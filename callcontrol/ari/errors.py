"""Errors raised by the ARI client and the event parser.

They describe what went wrong between us and Asterisk and know nothing of our
own HTTP API: the API layer alone maps them to its status codes.

    AriError
    ├── AriProtocolError      Asterisk sent something we cannot read
    └── AriRequestError       a REST request failed (method, path, status, message)
        ├── AriBadRequest     400, 422: we sent something Asterisk rejects
        ├── AriUnauthorized   401, 403: wrong ARI credentials or file permissions
        ├── AriNotFound       404: the channel/bridge/recording does not exist (any more)
        ├── AriConflict       409, 412: exists but in the wrong state (not in Stasis,
        │                     not answered, id already taken, ...)
        └── AriUnavailable    5xx, connection refused/reset, timeout (status None)
"""

from __future__ import annotations


class AriError(Exception):
    """Base of every error raised by `callcontrol.ari`."""


class AriProtocolError(AriError):
    """Asterisk sent a message or body we could not parse or validate."""

    def __init__(self, message: str, raw: bytes | str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # A bounded excerpt, enough to log without flooding.
        self.raw_excerpt = raw[:500] if raw is not None else None


class AriRequestError(AriError):
    """A REST request to Asterisk failed.

    `status` is the HTTP status, or None when no response arrived at all.
    `message` is Asterisk's own explanation (its `{"message": ...}` body) when
    it gave one, else a description of the transport failure.
    """

    def __init__(self, method: str, path: str, status: int | None, message: str) -> None:
        super().__init__(
            f"{method} {path} -> {status if status is not None else 'no response'}: {message}"
        )
        self.method = method
        self.path = path
        self.status = status
        self.message = message


class AriBadRequest(AriRequestError):
    """400 or 422: the request's parameters or body were invalid."""


class AriUnauthorized(AriRequestError):
    """401 or 403: ARI credentials refused, or access to a file denied."""


class AriNotFound(AriRequestError):
    """404: the resource does not exist; for a channel after hang-up: already gone."""


class AriConflict(AriRequestError):
    """409 or 412: the resource is in a state that forbids the operation."""


class AriUnavailable(AriRequestError):
    """Asterisk did not answer usefully: connection failure, timeout or 5xx.

    After a timeout the operation may still have happened in Asterisk.
    """


def error_for_status(method: str, path: str, status: int, message: str) -> AriRequestError:
    """Return the typed error for an HTTP error status."""
    cls: type[AriRequestError]
    if status in (400, 422):
        cls = AriBadRequest
    elif status in (401, 403):
        cls = AriUnauthorized
    elif status == 404:
        cls = AriNotFound
    elif status in (409, 412):
        cls = AriConflict
    elif status >= 500:
        cls = AriUnavailable
    else:
        cls = AriRequestError
    return cls(method, path, status, message)
