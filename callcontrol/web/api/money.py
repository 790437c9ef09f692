"""Money actions of the operator: refund an order (within 2 working days of the
service being provided, ``services.refunds``), give a disconnected number back
to its former owner while nobody took it (the setup fee is paid again), and
the account's negotiated volume discount.

A customer may ask for its own number back (``give-backs``); a number it never
held, or that someone else holds now, is a 404 as if it did not exist.
"""

from __future__ import annotations

from callcontrol.domain.callerid import parse_did
from callcontrol.domain.errors import InvalidInput
from callcontrol.services import inventory
from callcontrol.services.accounts import set_volume_discount
from callcontrol.services.errors import NotFound as ServiceNotFound
from callcontrol.web.api import lookup
from callcontrol.web.api.endpoint import ApiCall, Route
from callcontrol.web.api.errors import NotFound, invalid
from callcontrol.web.api.schemas import DiscountIn, DiscountOut, GiveBack, NumberOut

TAG = "money"


async def refund_order(call: ApiCall) -> NumberOut:
    async with call.sessions() as session:
        number = await inventory.number_by_did(session, call.did())
    await call.numbers.refund_order(number.id)
    async with call.sessions() as session:
        return await lookup.one_number_out(
            session, await inventory.number_by_did(session, call.did())
        )


async def give_back(call: ApiCall) -> NumberOut:
    body = call.body_as(GiveBack)
    try:
        did = parse_did(body.did).e164
    except InvalidInput as exc:
        raise invalid("body.did", str(exc)) from None
    async with call.sessions() as session:
        owner = await lookup.account(session, call.caller, call.id("account_id"))
        try:
            number = await inventory.number_by_did(session, did)
        except ServiceNotFound:
            raise NotFound(f"number {did} not found") from None
        if number.previous_account_id != owner.id:
            raise NotFound(f"number {did} not found")
    await call.numbers.give_back(number.id, owner.id)
    async with call.sessions() as session:
        return await lookup.one_number_out(session, await inventory.number_by_did(session, did))


async def put_discount(call: ApiCall) -> DiscountOut:
    body = call.body_as(DiscountIn)
    async with call.sessions() as session, session.begin():
        owner = await lookup.account(session, call.caller, call.id("account_id"))
        await set_volume_discount(session, owner.id, body.volume_discount_pct)
    return DiscountOut(account_id=owner.id, volume_discount_pct=body.volume_discount_pct)


ACC = "/api/v1/accounts/{account_id}"
ROUTES = [
    Route("POST", "/api/v1/numbers/{did}/refund", refund_order, "Cancel the number's latest "
          "order within 2 working days: setup fee and first month refunded, number deleted",
          TAG, operator_only=True, response=NumberOut, errors=(409,)),
    Route("POST", ACC + "/give-backs", give_back, "Take a disconnected number back (its "
          "former owner; the setup fee is paid again)", TAG, body=GiveBack,
          response=NumberOut, status=201, errors=(409,)),
    Route("PUT", ACC + "/discount", put_discount, "Set the negotiated volume discount", TAG,
          operator_only=True, body=DiscountIn, response=DiscountOut),
]  # fmt: skip
