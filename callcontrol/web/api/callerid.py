"""CallerID on outbound calls: the operator turns a number's CallerID service on or
off; a customer (or the operator for it) chooses which of the account's numbers
its SIP accounts present by default, and may override that per SIP account.

Which numbers qualify is ``services.callerid``'s rule; this module checks who
may act and names the number in the body by DID, as the rest of the API does. A
number the account does not hold (another account's, or none at all) and a
number it holds that cannot be presented are each a 422 on ``body.did``, the
first with the same message whatever the reason, so nothing is learnt about
other accounts' numbers. The service on a number that is not bought is a 409.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from callcontrol.domain.callerid import parse_did
from callcontrol.domain.errors import InvalidInput
from callcontrol.services import callerid
from callcontrol.web.api import lookup
from callcontrol.web.api.endpoint import ApiCall, Route
from callcontrol.web.api.errors import invalid
from callcontrol.web.api.schemas import (
    AccountOut,
    CallerIdService,
    NumberOut,
    PresentedNumber,
    SipAccountOut,
)

TAG = "callerid"


def _chosen_did(call: ApiCall) -> str | None:
    raw = call.body_as(PresentedNumber).did
    if raw is None:
        return None
    try:
        return parse_did(raw).e164
    except InvalidInput as exc:
        raise invalid("body.did", str(exc)) from None


@contextmanager
def _refusal_names_body_did() -> Iterator[None]:
    try:
        yield
    except callerid.NotPresentable as exc:
        raise invalid("body.did", str(exc)) from None


async def set_callerid_service(call: ApiCall) -> NumberOut:
    enabled = call.body_as(CallerIdService).enabled
    async with call.sessions() as session, session.begin():
        row = await lookup.number(session, call.caller, call.did())
        number = await callerid.set_service(session, row.id, enabled=enabled)
        return lookup.number_out(number)


async def choose_account_number(call: ApiCall) -> AccountOut:
    did = _chosen_did(call)
    async with call.sessions() as session, session.begin():
        row = await lookup.account(session, call.caller, call.id("account_id"))
        with _refusal_names_body_did():
            await callerid.choose_account_number(session, row, did)
        await session.refresh(row)
        return await lookup.account_out(session, row)


async def choose_sip_account_number(call: ApiCall) -> SipAccountOut:
    did = _chosen_did(call)
    async with call.sessions() as session, session.begin():
        row = await lookup.sip_account(session, call.caller, call.id("sip_account_id"))
        with _refusal_names_body_did():
            await callerid.choose_sip_account_number(session, row, did)
        return await lookup.sip_account_out(session, row)


ROUTES = [
    Route("PUT", "/api/v1/numbers/{did}/callerid-service", set_callerid_service,
          "Turn the number's CallerID service on or off", TAG, operator_only=True,
          body=CallerIdService, response=NumberOut,
          errors=(409,)),  # turned on for a number no account has bought, or sms-once
    Route("PUT", "/api/v1/accounts/{account_id}/presented-number", choose_account_number,
          "Choose the number the account's SIP accounts present (null: none)", TAG,
          body=PresentedNumber, response=AccountOut),
    Route("PUT", "/api/v1/sip-accounts/{sip_account_id}/presented-number",
          choose_sip_account_number,
          "Choose the number this SIP account presents instead (null: the account's)", TAG,
          body=PresentedNumber, response=SipAccountOut),
]  # fmt: skip
