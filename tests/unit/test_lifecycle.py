"""The number life cycle: facts and an action in, a transition or a refusal out.

Pure: no I/O, no mocks. Effects are compared as data.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcontrol.domain.errors import DomainError, IllegalTransition, InvalidInput, NotPermitted
from callcontrol.domain.lifecycle import (
    DEFAULT_RESERVATION_HOLD,
    TEST_PERIOD,
    CallAdmission,
    ChargeFirstMonth,
    ChargeSetupFee,
    ClearOwner,
    ClearSuspendedSince,
    NumberAction,
    NumberFacts,
    RecordDeletedOn,
    RecordDocumentsAccepted,
    RecordFormerOwner,
    SendActivationMail,
    SendDisconnectionMail,
    SetActivatedOn,
    SetOwner,
    SetReservationExpiry,
    SetSuspendedSince,
    SetTestExpiry,
    Transition,
    can_take_calls,
    transition,
)
from callcontrol.domain.vocabulary import NumberKind, NumberState

A = NumberAction
S = NumberState
NOW = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
TODAY = date(2026, 1, 31)
ALICE, BOB = 3, 4

IN_POOL = NumberFacts(
    number_id=7,
    state=S.AVAILABLE,
    kind=NumberKind.VOICE,
    currency="EUR",
    reservable=True,
    setup_fee_minor=1000,
    monthly_fee_minor=500,
)


def facts(state: NumberState, account_id: int | None = ALICE, **changes: object) -> NumberFacts:
    return replace(IN_POOL, state=state, account_id=account_id, **changes)  # type: ignore[arg-type]


def do(number: NumberFacts, action: NumberAction, actor: int | None = None) -> Transition:
    return transition(number, action, actor_account_id=actor, now=NOW)


# -- reservation ----------------------------------------------------------------------------


def test_a_reservable_number_is_held_for_the_account_that_reserves_it() -> None:
    assert do(IN_POOL, A.RESERVE, ALICE) == Transition(
        A.RESERVE,
        S.AVAILABLE,
        S.RESERVED,
        (SetOwner(ALICE), SetReservationExpiry(NOW + DEFAULT_RESERVATION_HOLD)),
    )


def test_a_number_that_is_not_reservable_cannot_be_reserved() -> None:
    with pytest.raises(IllegalTransition, match="may not be reserved"):
        do(replace(IN_POOL, reservable=False), A.RESERVE, ALICE)


def test_the_holder_can_release_a_reservation_but_another_account_cannot() -> None:
    held = facts(S.RESERVED)
    assert do(held, A.RELEASE_RESERVATION, ALICE).effects == (ClearOwner(),)
    with pytest.raises(NotPermitted):
        do(held, A.RELEASE_RESERVATION, BOB)


def test_a_reservation_expires_only_once_its_hold_is_over() -> None:
    held = facts(S.RESERVED, reserved_until=NOW + timedelta(minutes=1))
    with pytest.raises(IllegalTransition, match="holds until"):
        do(held, A.RESERVATION_EXPIRED)
    expired = replace(held, reserved_until=NOW)
    assert do(expired, A.RESERVATION_EXPIRED).to_state is S.AVAILABLE


# -- buying and activation ------------------------------------------------------------------


def test_buying_an_available_number_charges_the_setup_fee_and_waits_for_the_carrier() -> None:
    assert do(IN_POOL, A.BUY, ALICE) == Transition(
        A.BUY, S.AVAILABLE, S.PENDING, (SetOwner(ALICE), ChargeSetupFee(ALICE, 1000, "EUR"))
    )


def test_a_number_reserved_for_an_account_can_be_bought_by_it() -> None:
    assert do(facts(S.RESERVED), A.BUY, ALICE).to_state is S.PENDING


def test_a_number_reserved_for_someone_else_cannot_be_bought() -> None:
    with pytest.raises(NotPermitted, match="reserved for another account"):
        do(facts(S.RESERVED), A.BUY, BOB)


def test_a_number_without_a_setup_fee_charges_none() -> None:
    assert do(replace(IN_POOL, setup_fee_minor=0), A.BUY, ALICE).effects == (SetOwner(ALICE),)


def test_activation_charges_the_first_month_with_the_daily_runs_key_and_sends_a_mail() -> None:
    assert do(facts(S.PENDING), A.ACTIVATE) == Transition(
        A.ACTIVATE,
        S.PENDING,
        S.ACTIVE,
        (
            SetActivatedOn(TODAY),
            ChargeFirstMonth(ALICE, 500, "EUR", TODAY, "monthly:7:2026-01-31"),
            SendActivationMail(ALICE, 7),
        ),
    )


def test_an_instant_number_is_bought_then_activated_at_once() -> None:
    bought = do(IN_POOL, A.BUY, ALICE)
    activated = do(facts(bought.to_state), A.ACTIVATE)
    assert (bought.from_state, activated.to_state) == (S.AVAILABLE, S.ACTIVE)


def test_a_number_needing_documents_stays_pending_until_they_are_accepted() -> None:
    waiting = facts(S.PENDING, needs_documents=True)
    with pytest.raises(IllegalTransition, match="documents have not been accepted"):
        do(waiting, A.ACTIVATE)
    accepted = do(waiting, A.DOCUMENTS_ACCEPTED)
    assert (accepted.to_state, accepted.effects) == (S.PENDING, (RecordDocumentsAccepted(),))
    assert do(replace(waiting, documents_accepted=True), A.ACTIVATE).to_state is S.ACTIVE


def test_a_customer_cannot_activate_their_own_number() -> None:
    with pytest.raises(NotPermitted, match="only the system or staff"):
        do(facts(S.PENDING), A.ACTIVATE, ALICE)


# -- suspension, disconnection, deletion ----------------------------------------------------


def test_suspension_records_the_day_and_reactivation_clears_it_without_a_charge() -> None:
    suspended = do(facts(S.ACTIVE), A.SUSPEND)
    assert (suspended.to_state, suspended.effects) == (S.SUSPENDED, (SetSuspendedSince(TODAY),))
    back = do(facts(S.SUSPENDED), A.REACTIVATE)
    assert (back.to_state, back.effects) == (S.ACTIVE, (ClearSuspendedSince(),))


def test_disconnection_frees_the_number_remembers_the_owner_and_tells_them() -> None:
    assert do(facts(S.SUSPENDED), A.DISCONNECT).effects == (
        ClearOwner(),
        ClearSuspendedSince(),
        RecordFormerOwner(ALICE),
        SendDisconnectionMail(ALICE, 7),
    )


def test_the_owner_can_delete_an_active_or_suspended_number() -> None:
    for state in (S.ACTIVE, S.SUSPENDED):
        deleted = do(facts(state), A.DELETE, ALICE)
        assert deleted.to_state is S.DISCONNECTED
        assert RecordDeletedOn(TODAY) in deleted.effects
        assert RecordFormerOwner(ALICE) in deleted.effects


def test_nobody_else_can_delete_a_customers_number() -> None:
    with pytest.raises(NotPermitted, match="does not own"):
        do(facts(S.ACTIVE), A.DELETE, BOB)


def test_a_disconnected_voice_number_returns_to_the_pool() -> None:
    assert do(facts(S.DISCONNECTED, None), A.RETURN_TO_POOL).to_state is S.AVAILABLE


def test_a_disconnected_number_is_given_back_to_its_former_owner_who_pays_setup_again() -> None:
    gone = facts(S.DISCONNECTED, None, former_owner_account_id=ALICE)
    back = do(gone, A.GIVE_BACK, ALICE)
    assert back.to_state is S.ACTIVE
    assert back.effects[:2] == (SetOwner(ALICE), ChargeSetupFee(ALICE, 1000, "EUR"))
    assert SendActivationMail(ALICE, 7) in back.effects


def test_a_number_needing_documents_given_back_waits_for_them_again() -> None:
    gone = facts(S.DISCONNECTED, None, former_owner_account_id=ALICE, needs_documents=True)
    assert do(gone, A.GIVE_BACK, ALICE).to_state is S.PENDING


def test_only_the_former_owner_can_get_a_number_back() -> None:
    gone = facts(S.DISCONNECTED, None, former_owner_account_id=ALICE)
    with pytest.raises(NotPermitted, match="not the former owner"):
        do(gone, A.GIVE_BACK, BOB)


def test_a_number_someone_else_took_meanwhile_cannot_be_given_back() -> None:
    taken = facts(S.ACTIVE, BOB, former_owner_account_id=ALICE)
    with pytest.raises(IllegalTransition, match="the number is active"):
        do(taken, A.GIVE_BACK, ALICE)


# -- sms-once numbers -----------------------------------------------------------------------

SMS = replace(IN_POOL, kind=NumberKind.SMS_ONCE)


def test_an_sms_once_number_is_never_lent_for_a_test() -> None:
    with pytest.raises(IllegalTransition, match="never lent"):
        do(SMS, A.START_TEST, ALICE)


def test_an_sms_once_number_is_never_reused() -> None:
    spent = replace(SMS, state=S.DISCONNECTED, former_owner_account_id=ALICE)
    with pytest.raises(IllegalTransition, match="never reused"):
        do(spent, A.RETURN_TO_POOL)
    with pytest.raises(IllegalTransition, match="never reused"):
        do(spent, A.GIVE_BACK, ALICE)


def test_an_sms_once_number_takes_no_calls_whatever_its_state() -> None:
    for state in NumberState:
        assert can_take_calls(state, NumberKind.SMS_ONCE, None, NOW) is CallAdmission.SMS_ONLY


# -- free test ------------------------------------------------------------------------------


def test_an_available_voice_number_is_lent_for_one_hour() -> None:
    assert do(IN_POOL, A.START_TEST, ALICE) == Transition(
        A.START_TEST, S.AVAILABLE, S.TESTING, (SetOwner(ALICE), SetTestExpiry(NOW + TEST_PERIOD))
    )
    assert TEST_PERIOD == timedelta(hours=1)


def test_an_account_has_one_test_at_a_time() -> None:
    with pytest.raises(NotPermitted, match="already has a number on test"):
        do(replace(IN_POOL, account_has_active_test=True), A.START_TEST, ALICE)


def test_a_test_number_returns_to_the_pool_after_its_hour_not_before() -> None:
    lent = facts(S.TESTING, test_expires_at=NOW + timedelta(seconds=1))
    with pytest.raises(IllegalTransition, match="test runs until"):
        do(lent, A.TEST_EXPIRED)
    over = replace(lent, test_expires_at=NOW)
    assert do(over, A.TEST_EXPIRED) == Transition(
        A.TEST_EXPIRED, S.TESTING, S.AVAILABLE, (ClearOwner(),)
    )


def test_a_test_number_takes_calls_during_its_hour_only() -> None:
    expires = NOW + TEST_PERIOD
    assert can_take_calls(S.TESTING, NumberKind.VOICE, expires, NOW) is CallAdmission.OK
    assert can_take_calls(S.TESTING, NumberKind.VOICE, expires, expires) is CallAdmission.UNKNOWN
    assert can_take_calls(S.TESTING, NumberKind.VOICE, None, NOW) is CallAdmission.UNKNOWN


# -- refusals -------------------------------------------------------------------------------


def test_an_illegal_transition_names_the_states_and_the_action() -> None:
    with pytest.raises(IllegalTransition) as refused:
        do(facts(S.ACTIVE), A.BUY, BOB)
    error = refused.value
    assert (error.from_state, error.to_state, error.action) == (S.ACTIVE, S.PENDING, A.BUY)
    assert str(error) == (
        "illegal transition active -> pending by 'buy': "
        "the number is active; buy needs available, reserved"
    )
    assert isinstance(error, DomainError)


def test_a_customer_action_without_an_account_is_refused() -> None:
    with pytest.raises(NotPermitted, match="needs the account"):
        do(IN_POOL, A.BUY, None)


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(InvalidInput, match="timezone-aware"):
        transition(IN_POOL, A.BUY, actor_account_id=ALICE, now=datetime(2026, 1, 31, 12))


# -- call admission -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "admission"),
    [
        (S.ACTIVE, CallAdmission.OK),
        (S.SUSPENDED, CallAdmission.SUSPENDED),
        (S.AVAILABLE, CallAdmission.UNKNOWN),
        (S.RESERVED, CallAdmission.UNKNOWN),
        (S.PENDING, CallAdmission.UNKNOWN),
        (S.DISCONNECTED, CallAdmission.UNKNOWN),
    ],
)
def test_only_active_numbers_take_calls_and_suspended_ones_are_told_apart(
    state: NumberState, admission: CallAdmission
) -> None:
    assert can_take_calls(state, NumberKind.VOICE, None, NOW) is admission


# -- properties -----------------------------------------------------------------------------

any_facts = st.builds(
    NumberFacts,
    number_id=st.integers(1, 10**6),
    state=st.sampled_from(NumberState),
    kind=st.sampled_from(NumberKind),
    currency=st.just("EUR"),
    account_id=st.sampled_from([None, ALICE, BOB]),
    reservable=st.booleans(),
    needs_documents=st.booleans(),
    documents_accepted=st.booleans(),
    setup_fee_minor=st.integers(0, 10**5),
    monthly_fee_minor=st.integers(0, 10**5),
    former_owner_account_id=st.sampled_from([None, ALICE, BOB]),
    reserved_until=st.sampled_from([None, NOW - timedelta(hours=1), NOW + timedelta(hours=1)]),
    test_expires_at=st.sampled_from([None, NOW - timedelta(hours=1), NOW + timedelta(hours=1)]),
    account_has_active_test=st.booleans(),
)


@given(any_facts, st.sampled_from(NumberAction), st.sampled_from([None, ALICE, BOB]))
def test_every_action_either_moves_from_the_current_state_or_is_refused_as_a_domain_error(
    number: NumberFacts, action: NumberAction, actor: int | None
) -> None:
    try:
        result = do(number, action, actor)
    except IllegalTransition as refused:
        assert refused.from_state == number.state
        assert refused.action == action
        return
    assert result.from_state == number.state
    assert result.action == action
    if number.kind is NumberKind.SMS_ONCE:
        assert result.to_state is not S.TESTING
        assert not (number.state is S.DISCONNECTED and result.to_state is not S.DISCONNECTED)
    charges = [e for e in result.effects if isinstance(e, ChargeSetupFee | ChargeFirstMonth)]
    assert all(c.amount_minor > 0 for c in charges)
