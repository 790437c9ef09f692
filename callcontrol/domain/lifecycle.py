"""The life cycle of a number: facts and an action in, a transition (or a refusal) out.

``transition`` is pure: it reads ``NumberFacts`` (what the database holds, plus
the one account-level fact it needs) and returns the new state with the
*effects* the edge must carry out, as data; it never writes anything. Rules:

- available -> reserved (``reserve``, only ``reservable`` numbers, held for the
  actor until ``now + reservation_hold``) -> available (``release_reservation``
  by the holder or staff, ``reservation_expired`` once the hold is over);
- available, or reserved for the same account -> pending (``buy``: setup fee
  charged). pending -> active (``activate``; the first month is charged, the
  activation day set, the activation mail sent). A number that needs the end
  user's documents stays pending until ``documents_accepted``. Instant numbers
  are ``buy`` then ``activate`` at once: the rules have one path, not two;
- active -> suspended (``suspend``, balance < 0) -> active (``reactivate``,
  balance > 0; no charge: renewal is from the activation day);
- active/suspended -> disconnected: ``disconnect`` (the system: unpaid after
  the grace days) or ``delete`` (the owner or staff). The former owner is
  remembered; no refund for the started month;
- disconnected -> available (``return_to_pool``), or back to the former owner
  (``give_back``: setup fee again; pending if the number needs documents, else
  active at once). A number in the pool that nobody took can simply be bought
  again by its former owner -- the same outcome;
- available voice -> testing (``start_test``, one hour, one test per account at
  a time) -> available (``test_expired``). ``sms-once`` numbers are never lent,
  never returned to the pool and never given back: they serve one registration;
- actions of the system or staff (activate, suspend, disconnect ...) are taken
  with ``actor_account_id=None``; customer actions name the account.

``can_take_calls`` is the admission check of the call path: tiny, no allocation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Final

from callcontrol.domain.billing import monthly_charge_key
from callcontrol.domain.errors import IllegalTransition, InvalidInput, NotPermitted
from callcontrol.domain.money import validate_currency, validate_minor
from callcontrol.domain.vocabulary import NumberKind, NumberState

TEST_PERIOD: Final = timedelta(hours=1)
DEFAULT_RESERVATION_HOLD: Final = timedelta(days=2)

S = NumberState


class NumberAction(StrEnum):
    RESERVE = "reserve"
    RELEASE_RESERVATION = "release_reservation"
    RESERVATION_EXPIRED = "reservation_expired"
    BUY = "buy"
    DOCUMENTS_ACCEPTED = "documents_accepted"
    ACTIVATE = "activate"
    SUSPEND = "suspend"
    REACTIVATE = "reactivate"
    DISCONNECT = "disconnect"
    DELETE = "delete"
    RETURN_TO_POOL = "return_to_pool"
    GIVE_BACK = "give_back"
    START_TEST = "start_test"
    TEST_EXPIRED = "test_expired"
    REFUSE_ACTIVATION = "refuse_activation"  # the carrier (or operator) will not activate it


class CallAdmission(StrEnum):
    OK = "ok"
    UNKNOWN = "unknown"  # not in service: treat as unallocated
    SUSPENDED = "suspended"
    SMS_ONLY = "sms_only"


@dataclass(frozen=True, slots=True)
class NumberFacts:
    """What the life cycle needs to know about a number (and the acting account)."""

    number_id: int
    state: NumberState
    kind: NumberKind
    currency: str
    # The account the number is with: the holder (reserved), the owner (pending,
    # active, suspended) or the tester (testing); None in the pool.
    account_id: int | None = None
    reservable: bool = False
    needs_documents: bool = False
    documents_accepted: bool = False
    setup_fee_minor: int = 0
    monthly_fee_minor: int = 0
    former_owner_account_id: int | None = None
    reserved_until: datetime | None = None
    test_expires_at: datetime | None = None
    # Account-level: does the acting account already have a number on test?
    account_has_active_test: bool = False

    def __post_init__(self) -> None:
        validate_currency(self.currency)
        for what, fee in (
            ("setup fee", self.setup_fee_minor),
            ("monthly fee", self.monthly_fee_minor),
        ):
            if validate_minor(fee, what) < 0:
                raise InvalidInput(f"{what} must not be negative: {fee}")


# -- effects: what the edge must do once the transition is stored --------------------------


@dataclass(frozen=True, slots=True)
class SetOwner:
    """The number is now with this account (holder, buyer or tester: the state says)."""

    account_id: int


@dataclass(frozen=True, slots=True)
class ClearOwner:
    """The number is with nobody: owner, hold, test expiry and documents status cleared."""


@dataclass(frozen=True, slots=True)
class RecordFormerOwner:
    account_id: int


@dataclass(frozen=True, slots=True)
class SetReservationExpiry:
    until: datetime


@dataclass(frozen=True, slots=True)
class SetTestExpiry:
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ChargeSetupFee:
    account_id: int
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class ChargeFirstMonth:
    """The first month's rent; the key is the one the daily run would use."""

    account_id: int
    amount_minor: int
    currency: str
    period_start: date
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class SetActivatedOn:
    day: date


@dataclass(frozen=True, slots=True)
class SendActivationMail:
    account_id: int
    number_id: int


@dataclass(frozen=True, slots=True)
class RecordDocumentsAccepted:
    pass


@dataclass(frozen=True, slots=True)
class SetSuspendedSince:
    day: date


@dataclass(frozen=True, slots=True)
class ClearSuspendedSince:
    pass


@dataclass(frozen=True, slots=True)
class RecordDeletedOn:
    day: date


@dataclass(frozen=True, slots=True)
class SendDisconnectionMail:
    account_id: int
    number_id: int


Effect = (
    SetOwner
    | ClearOwner
    | RecordFormerOwner
    | SetReservationExpiry
    | SetTestExpiry
    | ChargeSetupFee
    | ChargeFirstMonth
    | SetActivatedOn
    | SendActivationMail
    | RecordDocumentsAccepted
    | SetSuspendedSince
    | ClearSuspendedSince
    | RecordDeletedOn
    | SendDisconnectionMail
)


@dataclass(frozen=True, slots=True)
class Transition:
    action: NumberAction
    from_state: NumberState
    to_state: NumberState
    effects: tuple[Effect, ...] = ()


# -- the state machine ---------------------------------------------------------------------

A = NumberAction

# Which states each action may start from, and where it normally leads.
_ALLOWED: Final[dict[NumberAction, tuple[frozenset[NumberState], NumberState]]] = {
    A.RESERVE: (frozenset({S.AVAILABLE}), S.RESERVED),
    A.RELEASE_RESERVATION: (frozenset({S.RESERVED}), S.AVAILABLE),
    A.RESERVATION_EXPIRED: (frozenset({S.RESERVED}), S.AVAILABLE),
    A.BUY: (frozenset({S.AVAILABLE, S.RESERVED}), S.PENDING),
    A.DOCUMENTS_ACCEPTED: (frozenset({S.PENDING}), S.PENDING),
    A.ACTIVATE: (frozenset({S.PENDING}), S.ACTIVE),
    A.SUSPEND: (frozenset({S.ACTIVE}), S.SUSPENDED),
    A.REACTIVATE: (frozenset({S.SUSPENDED}), S.ACTIVE),
    A.DISCONNECT: (frozenset({S.ACTIVE, S.SUSPENDED}), S.DISCONNECTED),
    A.DELETE: (frozenset({S.ACTIVE, S.SUSPENDED}), S.DISCONNECTED),
    A.RETURN_TO_POOL: (frozenset({S.DISCONNECTED}), S.AVAILABLE),
    A.GIVE_BACK: (frozenset({S.DISCONNECTED}), S.ACTIVE),
    A.START_TEST: (frozenset({S.AVAILABLE}), S.TESTING),
    A.TEST_EXPIRED: (frozenset({S.TESTING}), S.AVAILABLE),
    A.REFUSE_ACTIVATION: (frozenset({S.PENDING}), S.AVAILABLE),
}

_SYSTEM_ONLY: Final = frozenset(
    {
        A.RESERVATION_EXPIRED,
        A.DOCUMENTS_ACCEPTED,
        A.ACTIVATE,
        A.SUSPEND,
        A.REACTIVATE,
        A.DISCONNECT,
        A.RETURN_TO_POOL,
        A.TEST_EXPIRED,
        A.REFUSE_ACTIVATION,
    }
)
_ACCOUNT_ONLY: Final = frozenset({A.RESERVE, A.BUY, A.GIVE_BACK, A.START_TEST})


@dataclass(frozen=True, slots=True)
class _Ctx:
    number: NumberFacts
    action: NumberAction
    actor: int | None
    now: datetime
    target: NumberState
    reservation_hold: timedelta
    activation_day: date | None = None

    @property
    def day(self) -> date:
        """The activation day: given explicitly (back-dated), else today."""
        return self.activation_day or self.now.date()

    def refuse(self, reason: str) -> IllegalTransition:
        return IllegalTransition(self.number.state, self.target, self.action, reason)

    def forbid(self, reason: str) -> NotPermitted:
        return NotPermitted(self.number.state, self.target, self.action, reason)

    @property
    def account(self) -> int:
        """The acting account (customer actions only; checked before deciding)."""
        if self.actor is None:
            raise self.forbid(f"{self.action} needs the account it is for")
        return self.actor

    def to(self, state: NumberState, *effects: Effect) -> Transition:
        return Transition(self.action, self.number.state, state, effects)


def transition(
    number: NumberFacts,
    action: NumberAction,
    *,
    actor_account_id: int | None,
    now: datetime,
    reservation_hold: timedelta = DEFAULT_RESERVATION_HOLD,
    activation_day: date | None = None,
) -> Transition:
    """Decide ``action`` on ``number``; raise ``IllegalTransition`` when refused.

    ``actor_account_id`` is the customer acting, or None for the system / staff.
    ``now`` must be tz-aware; its date is the activation / deletion day unless
    ``activation_day`` names another (never later than ``now``'s date).
    """
    if activation_day is not None and activation_day > now.date():
        raise InvalidInput(f"an activation day may not be in the future: {activation_day}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise InvalidInput(f"now must be timezone-aware: {now!r}")
    sources, target = _ALLOWED[action]
    if action is A.GIVE_BACK and number.needs_documents:
        target = S.PENDING
    ctx = _Ctx(number, action, actor_account_id, now, target, reservation_hold, activation_day)
    if number.state not in sources:
        allowed = ", ".join(sorted(sources))
        raise ctx.refuse(f"the number is {number.state}; {action} needs {allowed}")
    if action in _SYSTEM_ONLY and actor_account_id is not None:
        raise ctx.forbid(f"only the system or staff may {action}, not account {actor_account_id}")
    if action in _ACCOUNT_ONLY and actor_account_id is None:
        raise ctx.forbid(f"{action} needs the account it is for")
    return _DECIDERS[action](ctx)


def _reserve(c: _Ctx) -> Transition:
    if not c.number.reservable:
        raise c.refuse("this number may not be reserved")
    hold = SetReservationExpiry(c.now + c.reservation_hold)
    return c.to(S.RESERVED, SetOwner(c.account), hold)


def _release_reservation(c: _Ctx) -> Transition:
    if c.actor is not None and c.actor != c.number.account_id:
        raise c.forbid(f"the reservation is not held for account {c.actor}")
    return c.to(S.AVAILABLE, ClearOwner())


def _reservation_expired(c: _Ctx) -> Transition:
    until = c.number.reserved_until
    if until is not None and c.now < until:
        raise c.refuse(f"the reservation holds until {until.isoformat()}")
    return c.to(S.AVAILABLE, ClearOwner())


def _buy(c: _Ctx) -> Transition:
    n, buyer = c.number, c.account
    if n.state is S.RESERVED and n.account_id != buyer:
        raise c.forbid(f"the number is reserved for another account, not {buyer}")
    return c.to(S.PENDING, SetOwner(buyer), *_setup_fee(n, buyer))


def _documents_accepted(c: _Ctx) -> Transition:
    if not c.number.needs_documents:
        raise c.refuse("this number needs no documents")
    return c.to(S.PENDING, RecordDocumentsAccepted())


def _activate(c: _Ctx) -> Transition:
    n = c.number
    if n.needs_documents and not n.documents_accepted:
        raise c.refuse("the end user's documents have not been accepted")
    if n.account_id is None:
        raise c.refuse("a pending number without an owner cannot be activated")
    return c.to(S.ACTIVE, *_activation(n, n.account_id, c.day))


def _suspend(c: _Ctx) -> Transition:
    return c.to(S.SUSPENDED, SetSuspendedSince(c.now.date()))


def _reactivate(c: _Ctx) -> Transition:
    return c.to(S.ACTIVE, ClearSuspendedSince())


def _disconnect(c: _Ctx) -> Transition:
    owner = c.number.account_id
    effects: list[Effect] = [ClearOwner(), ClearSuspendedSince()]
    if owner is not None:
        effects += [RecordFormerOwner(owner), SendDisconnectionMail(owner, c.number.number_id)]
    return c.to(S.DISCONNECTED, *effects)


def _delete(c: _Ctx) -> Transition:
    owner = c.number.account_id
    if c.actor is not None and c.actor != owner:
        raise c.forbid(f"account {c.actor} does not own this number")
    effects: list[Effect] = [ClearOwner(), ClearSuspendedSince(), RecordDeletedOn(c.now.date())]
    if owner is not None:
        effects.append(RecordFormerOwner(owner))
    return c.to(S.DISCONNECTED, *effects)


def _return_to_pool(c: _Ctx) -> Transition:
    if c.number.kind is NumberKind.SMS_ONCE:
        raise c.refuse("an sms-once number is never reused")
    return c.to(S.AVAILABLE)


def _give_back(c: _Ctx) -> Transition:
    n, owner = c.number, c.account
    if n.kind is NumberKind.SMS_ONCE:
        raise c.refuse("an sms-once number is never reused")
    if n.former_owner_account_id != owner:
        raise c.forbid(f"account {owner} is not the former owner of this number")
    paid = (SetOwner(owner), *_setup_fee(n, owner))
    if n.needs_documents:  # the carrier needs the documents again for a re-assignment
        return c.to(S.PENDING, *paid)
    return c.to(S.ACTIVE, *paid, *_activation(n, owner, c.day))


def _start_test(c: _Ctx) -> Transition:
    n, tester = c.number, c.account
    if n.kind is not NumberKind.VOICE:
        raise c.refuse(f"{n.kind} numbers are never lent for a test")
    if n.account_has_active_test:
        raise c.forbid(f"account {tester} already has a number on test")
    return c.to(S.TESTING, SetOwner(tester), SetTestExpiry(c.now + TEST_PERIOD))


def _test_expired(c: _Ctx) -> Transition:
    expires = c.number.test_expires_at
    if expires is not None and c.now < expires:
        raise c.refuse(f"the test runs until {expires.isoformat()}")
    return c.to(S.AVAILABLE, ClearOwner())


def _refuse_activation(c: _Ctx) -> Transition:
    """Back to the pool; what the order charged is refunded by the edge."""
    return c.to(S.AVAILABLE, ClearOwner())


def _setup_fee(n: NumberFacts, account_id: int) -> tuple[Effect, ...]:
    if n.setup_fee_minor == 0:
        return ()
    return (ChargeSetupFee(account_id, n.setup_fee_minor, n.currency),)


def _activation(n: NumberFacts, account_id: int, day: date) -> tuple[Effect, ...]:
    effects: list[Effect] = [SetActivatedOn(day)]
    if n.monthly_fee_minor > 0:
        key = monthly_charge_key(n.number_id, day)
        effects.append(ChargeFirstMonth(account_id, n.monthly_fee_minor, n.currency, day, key))
    effects.append(SendActivationMail(account_id, n.number_id))
    return tuple(effects)


_DECIDERS: Final[dict[NumberAction, Callable[[_Ctx], Transition]]] = {
    A.RESERVE: _reserve,
    A.RELEASE_RESERVATION: _release_reservation,
    A.RESERVATION_EXPIRED: _reservation_expired,
    A.BUY: _buy,
    A.DOCUMENTS_ACCEPTED: _documents_accepted,
    A.ACTIVATE: _activate,
    A.SUSPEND: _suspend,
    A.REACTIVATE: _reactivate,
    A.DISCONNECT: _disconnect,
    A.DELETE: _delete,
    A.RETURN_TO_POOL: _return_to_pool,
    A.GIVE_BACK: _give_back,
    A.START_TEST: _start_test,
    A.TEST_EXPIRED: _test_expired,
    A.REFUSE_ACTIVATION: _refuse_activation,
}


# -- the call path -------------------------------------------------------------------------


def can_take_calls(
    state: NumberState, kind: NumberKind, test_expires_at: datetime | None, now: datetime
) -> CallAdmission:
    """May a call to this number be put through? Used on every inbound call."""
    if kind is NumberKind.SMS_ONCE:
        return CallAdmission.SMS_ONLY
    if state is NumberState.ACTIVE:
        return CallAdmission.OK
    if state is NumberState.SUSPENDED:
        return CallAdmission.SUSPENDED
    if state is NumberState.TESTING and test_expires_at is not None and now < test_expires_at:
        return CallAdmission.OK
    return CallAdmission.UNKNOWN
