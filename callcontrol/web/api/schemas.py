"""The request and answer models of the API (pydantic), the source of ``/openapi.json``.

Requests forbid unknown fields and are validated strictly (no "5" for 5).
Strings refuse NUL characters (PostgreSQL cannot store them); integers that
reach the database are bounded to what its columns hold. Money is integer
minor units next to an ISO 4217 currency, as in the ledger.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.money import require_iso_4217
from callcontrol.domain.vocabulary import (
    CallDirection,
    DestinationType,
    Disposition,
    ForwardingMode,
    LedgerKind,
    MediaKind,
    NumberKind,
    NumberState,
)

NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, StringConstraints(pattern=NO_NUL)]
Name = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]*[^\x00\s][^\x00]*$")
]
Email = Annotated[str, StringConstraints(max_length=320, pattern=r"^[^@\s\x00]+@[^@\s\x00]+$")]


def _iso_4217(value: str) -> str:
    try:
        return require_iso_4217(value)
    except InvalidInput as exc:
        raise ValueError(str(exc)) from None


CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$"), AfterValidator(_iso_4217)]
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]
Limit = Annotated[int, Field(ge=1, le=1000)]
Offset = Annotated[int, Field(ge=0, le=1_000_000)]
MAX_MINOR = 10**12
_ISO_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _iso_day(value: object) -> object:
    # Query values are strings; lax pydantic would read "0" as 1970-01-01.
    if isinstance(value, str) and not _ISO_DAY.match(value):
        raise ValueError("expected a day as YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_iso_day)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorDetail(Output):
    field: str = Field(description="where the wrong value is, e.g. body.destinations.0.target")
    message: str


class ErrorBody(Output):
    error: str = Field(description="a stable machine code, e.g. invalid_input, not_found")
    message: str
    details: list[ErrorDetail]


class AccountCreate(Input):
    name: Name
    email: Email | None = None
    currency: CurrencyCode = "EUR"


class AccountUpdate(Input):
    name: Name | None = None
    email: Email | None = None


class AccountOut(Output):
    id: int
    name: str
    email: str | None
    currency: str
    balance_minor: int
    presented_number: str | None = Field(
        description="the number the account's SIP accounts present by default (E.164); "
        "a SIP account's own choice overrides it"
    )
    created_at: datetime
    erased_at: datetime | None


class AccountList(Output):
    items: list[AccountOut]


class TopUp(Input):
    amount_minor: Annotated[int, Field(ge=1, le=MAX_MINOR)]
    idempotency_key: (
        Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[!-~]+$")] | None
    ) = Field(default=None, description="a retried top-up with the same key is posted once")


class BalanceOut(Output):
    account_id: int
    balance_minor: int
    currency: str
    already_posted: bool = Field(description="true: this idempotency key was used before")


class TokenCreated(Output):
    token: str = Field(description="shown once; only its SHA-256 is stored")
    role: Literal["operator", "customer"]
    account_id: int | None


class TokenOut(Output):
    id: int
    role: Literal["operator", "customer"]
    account_id: int | None
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenList(Output):
    items: list[TokenOut]


class TokenQuery(Input):
    account_id: Id | None = Field(default=None, description="operator: one account's tokens")


Label = Annotated[str, StringConstraints(max_length=100, pattern=r"^[ -~]*$")]


class TokenCreateQuery(Input):
    expires_in_days: Annotated[int, Field(ge=1, le=3650)] | None = Field(
        default=None, description="the token stops working after this many days"
    )
    label: Label = Field(default="", description="what the token is for (listed, not secret)")


class PageQuery(Input):
    limit: Limit = 100
    offset: Offset = 0


class PeriodQuery(PageQuery):
    since: Day | None = Field(default=None, description="first day (UTC), inclusive")
    until: Day | None = Field(default=None, description="last day (UTC), inclusive")


class TotalsQuery(Input):
    since: Day | None = Field(default=None, description="first day (UTC), inclusive")
    until: Day | None = Field(default=None, description="last day (UTC), inclusive")


class TransactionOut(Output):
    id: int
    kind: LedgerKind
    amount_minor: int
    currency: str
    created_at: datetime
    did: str | None
    period_start: date | None
    description: str


class TransactionList(Output):
    items: list[TransactionOut]


class PoolQuery(PageQuery):
    country_code: Annotated[int, Field(ge=1, le=999)] | None = Field(
        default=None, description="E.164 country calling code, e.g. 49"
    )
    region: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None
    city: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NO_NUL)] | None = (
        None
    )
    kind: NumberKind | None = None


class PoolNumber(Output):
    e164: str
    country_code: int
    region: str
    city: str | None
    kind: NumberKind
    reservable: bool
    needs_documents: bool
    monthly_fee_minor: int
    setup_fee_minor: int
    currency: str


class PoolList(Output):
    items: list[PoolNumber]


class NumberOut(Output):
    e164: str
    state: NumberState
    kind: NumberKind
    country_code: int
    region: str
    city: str | None
    account_id: int | None
    needs_documents: bool
    activated_on: date | None
    next_charge_date: date | None
    monthly_fee_minor: int
    setup_fee_minor: int
    currency: str
    reserved_until: datetime | None
    test_expires_at: datetime | None
    voicemail_enabled: bool
    greeting_media_id: int | None
    voicemail_greeting_media_id: int | None
    callerid_service: bool = Field(
        description="the CallerID service (turned on by the operator): outbound calls may "
        "show this number, on calls to its own country only"
    )


class NumberList(Output):
    items: list[NumberOut]


class NumberSettings(Input):
    """Only the fields sent are changed; ``null`` clears a greeting."""

    voicemail_enabled: bool | None = None
    greeting_media_id: Id | None = None
    voicemail_greeting_media_id: Id | None = None


DidText = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=NO_NUL)]
Region = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
City = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NO_NUL)]


class Reservation(Input):
    did: DidText


class CallerIdService(Input):
    enabled: bool


class PresentedNumber(Input):
    """The number to present (``null``: none). It must be an active or suspended
    voice number of the account; it shows only with the CallerID service, and only
    on calls to its own country."""

    did: DidText | None = Field(description="E.164, e.g. +4930123456; null clears the choice")


class Purchase(Input):
    """Either a chosen number (``did``: available, or reserved for this account), or
    automatic mode: ``region`` (mobile) or ``region`` + ``city`` (landline), the number
    itself being known once it is activated."""

    did: DidText | None = None
    region: Region | None = Field(default=None, description="ISO 3166 alpha-2, e.g. DE")
    city: City | None = None
    kind: NumberKind = NumberKind.VOICE

    @model_validator(mode="after")
    def _one_way(self) -> Purchase:
        if (self.did is None) == (self.region is None):
            raise ValueError("give either did (a chosen number) or region (automatic mode)")
        if self.city is not None and self.region is None:
            raise ValueError("city needs region")
        return self


class DestinationIn(Input):
    type: DestinationType
    target: Annotated[str, StringConstraints(min_length=1, max_length=300, pattern=NO_NUL)]
    timeout_s: Annotated[int, Field(ge=5, le=120)] = 20


class DestinationOut(Output):
    position: int
    type: DestinationType
    target: str
    timeout_s: int


class ForwardingIn(Input):
    mode: ForwardingMode = ForwardingMode.SIMULTANEOUS
    destinations: Annotated[list[DestinationIn], Field(max_length=2)]


class ForwardingOut(Output):
    did: str
    mode: ForwardingMode
    destinations: list[DestinationOut]


class TestRequest(Input):
    """Lend an available voice number for one hour: a chosen one or any of a region."""

    did: DidText | None = None
    region: Region | None = Field(default=None, description="ISO 3166 alpha-2, e.g. DE")
    destination: DestinationIn

    @model_validator(mode="after")
    def _one_way(self) -> TestRequest:
        if (self.did is None) == (self.region is None):
            raise ValueError("give either did (a chosen number) or region")
        return self


class UploadQuery(Input):
    kind: MediaKind
    name: Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=NO_NUL)] = (
        "upload.wav"
    )


class MediaOut(Output):
    id: int
    kind: MediaKind
    original_name: str
    size_bytes: int
    duration_ms: int
    created_at: datetime


class MediaList(Output):
    items: list[MediaOut]


class VoicemailOut(Output):
    id: int
    did: str | None
    caller: str | None
    duration_ms: int
    size_bytes: int
    created_at: datetime


class VoicemailList(Output):
    items: list[VoicemailOut]


class SipAccountCreate(Input):
    login: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{2,31}$")] | None = Field(
        default=None, description="chosen login; generated when absent"
    )


class SipAccountOut(Output):
    id: int
    account_id: int
    login: str
    domain: str
    presented_number: str | None = Field(
        description="the number this SIP account presents (E.164); null: the account's "
        "presented_number"
    )
    created_at: datetime


class SipAccountCredentials(SipAccountOut):
    password: str = Field(description="shown once; only its HA1 digest is stored")


class SipAccountList(Output):
    items: list[SipAccountOut]


class CallOut(Output):
    id: str
    direction: CallDirection
    did: str
    caller: str | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    disposition: Disposition | None
    answered_destination: str | None
    talk_seconds: int = Field(description="talk time rounded up to a whole second")
    cost_minor: int
    currency: str | None


class CallList(Output):
    items: list[CallOut]


class NumberTotals(Output):
    did: str
    calls: int
    answered: int
    minutes: int = Field(description="talk time, each call rounded up to a whole minute")
    talk_seconds: int = Field(
        description="the sum of each call's talk time rounded up to a whole second (as in "
        "the call list)"
    )
    cost_minor: int


class TotalsOut(Output):
    since: date | None
    until: date | None
    items: list[NumberTotals]


class PersonalData(Output):
    exported_at: datetime
    account: AccountOut
    numbers: list[NumberOut]
    sip_accounts: list[SipAccountOut]
    media: list[MediaOut]
    voicemail: list[VoicemailOut]
    calls: list[CallOut]
    transactions: list[TransactionOut]


class ErasureOut(Output):
    account_id: int
    erased_at: datetime
    recordings_deleted: int
    calls_anonymised: int


# -- the operator's side ------------------------------------------------------------------

InventoryCell = (
    Annotated[str, StringConstraints(max_length=100, pattern=NO_NUL)] | int | bool | None
)
MinorFee = Annotated[int, Field(ge=0, le=MAX_MINOR)]
MAX_IMPORT_BYTES = 5 * 1024 * 1024


class InventoryImport(Input):
    """Numbers for the pool: a CSV file's text (``csv``, header line first) or the
    same columns as JSON objects (``numbers``). All or nothing: one bad row and
    nothing is stored; every bad row is named by its line."""

    csv: Annotated[str, StringConstraints(max_length=MAX_IMPORT_BYTES, pattern=NO_NUL)] | None = (
        Field(default=None, description="e164,country,city,kind,monthly_fee_minor,...")
    )
    numbers: Annotated[list[dict[str, InventoryCell]], Field(max_length=10_000)] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> InventoryImport:
        if (self.csv is None) == (self.numbers is None):
            raise ValueError("give either csv (the file's text) or numbers (JSON rows)")
        return self


class ImportOut(Output):
    imported: int


class InventoryQuery(PageQuery):
    state: NumberState | None = None
    account_id: Id | None = None
    country_code: Annotated[int, Field(ge=1, le=999)] | None = None
    region: Region | None = None
    city: City | None = None
    kind: NumberKind | None = None
    did_prefix: Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{1,15}$")] | None = Field(
        default=None, description="numbers starting with these digits, e.g. +4930"
    )


class InventoryNumberOut(NumberOut):
    reservable: bool
    expected_activation: str | None


class InventoryList(Output):
    items: list[InventoryNumberOut]


class InventoryEditIn(Input):
    """Only the fields sent change; ``null`` clears ``city`` / ``expected_activation``."""

    monthly_fee_minor: MinorFee | None = None
    setup_fee_minor: MinorFee | None = None
    currency: CurrencyCode | None = None
    reservable: bool | None = None
    needs_documents: bool | None = None
    city: City | None = None
    expected_activation: Annotated[str, StringConstraints(max_length=50, pattern=NO_NUL)] | None = (
        None
    )


# In a JSON body a day is a "YYYY-MM-DD" string (strict JSON parsing reads it as a
# date; a BeforeValidator would make it want a date object).
BodyDay = date


class ActivationIn(Input):
    activated_on: BodyDay | None = Field(
        default=None,
        description="the activation day, which fixes the monthly charge day (default: today, "
        "UTC); may be in the past, never in the future",
    )


class RefusalIn(Input):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=150, pattern=NO_NUL)]


class RateIn(Input):
    prefix: Annotated[str, StringConstraints(pattern=r"^\+?[1-9][0-9]{0,14}$")] = Field(
        description="E.164 digits a destination starts with, e.g. 49 or 4915"
    )
    rate_per_minute_minor: Annotated[int, Field(ge=0, le=10**9)]
    currency: CurrencyCode
    description: Annotated[str, StringConstraints(max_length=200, pattern=NO_NUL)] = ""


class RateEdit(Input):
    rate_per_minute_minor: Annotated[int, Field(ge=0, le=10**9)] | None = None
    currency: CurrencyCode | None = None
    description: Annotated[str, StringConstraints(max_length=200, pattern=NO_NUL)] | None = None


class RateOut(Output):
    id: int
    prefix: str
    rate_per_minute_minor: int
    currency: str
    description: str


class RateList(Output):
    items: list[RateOut]


class RateQuery(PageQuery):
    prefix: Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{1,15}$")] | None = Field(
        default=None, description="rates whose prefix starts with these digits"
    )
    number: Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{2,15}$")] | None = Field(
        default=None, description="only the rate that applies to this number (longest prefix)"
    )


class RateImport(Input):
    csv: Annotated[
        str, StringConstraints(min_length=1, max_length=MAX_IMPORT_BYTES, pattern=NO_NUL)
    ] = Field(description="prefix,rate_per_minute_minor,currency,description")


class RateImportOut(Output):
    added: int
    updated: int


class GiveBack(Input):
    did: DidText


class DiscountIn(Input):
    volume_discount_pct: Annotated[int, Field(ge=0, le=100)] = Field(
        description="the negotiated discount on buying 5 or more numbers at once"
    )


class DiscountOut(Output):
    account_id: int
    volume_discount_pct: int


class DocumentUploadQuery(Input):
    kind: Literal["passport", "proof_of_address", "other"]
    name: Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=NO_NUL)] = (
        "document"
    )


class DocumentOut(Output):
    id: int
    did: str | None
    kind: str
    content_type: str
    original_name: str
    size_bytes: int
    state: Literal["submitted", "approved", "rejected"]
    reason: str | None = Field(description="why the operator rejected it")
    created_at: datetime
    reviewed_at: datetime | None


class DocumentList(Output):
    items: list[DocumentOut]


class DocumentReview(Input):
    approved: bool
    reason: Annotated[str, StringConstraints(max_length=300, pattern=NO_NUL)] | None = None


class BulkPurchase(Input):
    """Several chosen numbers bought at once (all or none); from 5 on, the account's
    negotiated volume discount is credited on their setup fees."""

    dids: Annotated[list[DidText], Field(min_length=1, max_length=100)]
