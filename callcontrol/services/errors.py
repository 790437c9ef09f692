"""Domain errors of the service layer (no HTTP here: the API maps them)."""

from __future__ import annotations

from typing import ClassVar

from callcontrol.domain.errors import DomainError


class NotFound(DomainError):
    """A number or account the caller named does not exist."""

    code: ClassVar[str] = "not_found"


class NoNumberAvailable(DomainError):
    """Nothing in the pool matches what was asked for."""

    code: ClassVar[str] = "no_number_available"


class InsufficientFunds(DomainError):
    """Service is prepaid: the balance does not cover the order."""

    code: ClassVar[str] = "insufficient_funds"


class RefundRefused(DomainError):
    """The order is outside the 2-working-day window, or there is nothing to refund."""

    code: ClassVar[str] = "refund_refused"


class QuotaExceeded(DomainError):
    """The account is at one of its quotas (``settings.quotas``)."""

    code: ClassVar[str] = "quota_exceeded"
