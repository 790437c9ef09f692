"""Every error the API answers, and the one place domain errors become HTTP statuses.

Rules kept here:
- Every error body is ``{"error": code, "message": text, "details": [{field, message}]}``.
- Domain errors know nothing of HTTP; ``status_for`` maps them (invalid input 422,
  illegal life-cycle transition, short balance, empty pool, a SIP login in use or
  the CallerID service for a number nobody bought 409, refused actor 403, unknown
  things 404; a change saved but not pushed to Asterisk 502).
- The middleware answers every failure under ``/api/`` in that shape, including
  the router's own 404/405 and aiohttp's 413, and never lets a traceback out:
  an unexpected exception is logged and answered 500 ``internal``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog
from aiohttp import web
from pydantic import ValidationError

from callcontrol.db import ledger
from callcontrol.domain.errors import (
    CurrencyMismatch,
    DomainError,
    IllegalTransition,
    InvalidInput,
    NotPermitted,
)
from callcontrol.services import callerid as callerid_service
from callcontrol.services import errors as service_errors
from callcontrol.services.rates import PrefixTaken
from provisioning.service import LoginTaken, ProvisioningError, SipAccountNotFound

log = structlog.get_logger(__name__)

Detail = dict[str, str]


class ApiError(Exception):
    """An answer other than success, raised anywhere under a handler."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: Iterable[Detail] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class Unprocessable(ApiError):
    status, code = 422, "invalid_input"


# Checked in order: the first class an error is an instance of decides.
_DOMAIN_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (service_errors.NotFound, 404),
    (service_errors.NoNumberAvailable, 409),
    (service_errors.InsufficientFunds, 409),
    (service_errors.RefundRefused, 409),
    (service_errors.QuotaExceeded, 409),
    (PrefixTaken, 409),  # before InvalidInput, of which it is a kind
    (callerid_service.ServiceRefused, 409),
    (NotPermitted, 403),
    (IllegalTransition, 409),
    (LoginTaken, 409),  # before InvalidInput, of which both are kinds
    (SipAccountNotFound, 404),
    (ProvisioningError, 502),
    (InvalidInput, 422),
    (CurrencyMismatch, 422),
    (ledger.AccountNotFound, 404),
    (ledger.CurrencyMismatch, 422),
    (ledger.IdempotencyConflict, 409),
    (DomainError, 422),
)


def status_for(error: Exception) -> int | None:
    """The HTTP status of a domain (or ledger) error; None if it is not one."""
    for kind, status in _DOMAIN_STATUS:
        if isinstance(error, kind):
            return status
    return None


def error_body(code: str, message: str, details: Iterable[Detail] = ()) -> dict[str, Any]:
    return {"error": code, "message": message, "details": list(details)}


def error_response(
    status: int, code: str, message: str, details: Iterable[Detail] = ()
) -> web.Response:
    return web.json_response(error_body(code, message, details), status=status)


def validation_details(exc: ValidationError, prefix: str) -> list[Detail]:
    """One detail per wrong value, named by its path (``body.destinations.0.target``)."""
    details = []
    for err in exc.errors(include_url=False, include_input=False):
        path = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        message = err["msg"].removeprefix("Value error, ")
        details.append({"field": path, "message": message})
    return details


def invalid(field: str, message: str) -> Unprocessable:
    return Unprocessable(f"{field}: {message}", [{"field": field, "message": message}])


def _answer(exc: BaseException) -> web.Response:
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.details)
    if isinstance(exc, web.HTTPException):
        code = exc.reason.lower().replace(" ", "_")
        response = error_response(exc.status, code, exc.reason)
        if "Allow" in exc.headers:  # a 405 must say which methods are allowed (RFC 9110)
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    status = status_for(exc) if isinstance(exc, Exception) else None
    if status is not None:
        code = str(getattr(exc, "code", "domain_error"))
        # A rejected upload names each problem (wrong rate, not PCM ...) for code.
        problems = getattr(exc, "problems", ())
        details = [{"field": "body", "message": str(p)} for p in problems]
        return error_response(status, code, str(exc), details)
    log.exception("api_unexpected_error", error=repr(exc))
    return error_response(500, "internal", "an unexpected error; it was logged")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure under /api/ as a JSON error body (other paths untouched)."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _answer(exc)
    except Exception as exc:
        return _answer(exc)
