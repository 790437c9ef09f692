"""Numbers: the pool, reservation, purchase, the free one-hour test, deletion, and
the per-number settings (voicemail on/off, which stored greeting plays).

The life cycle itself is ``services.numbers.NumberService``; this module names
numbers by DID, checks who may act, and shows state and next charge date. A
customer acting on the pool sees only numbers it may take (available, or
reserved for itself); anything else is "not found".
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.db.models import Number
from callcontrol.domain.callerid import parse_did
from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.vocabulary import MediaKind, NumberState
from callcontrol.repositories import listings
from callcontrol.services import quotas
from callcontrol.services.numbers import ForwardTo
from callcontrol.web.api import lookup
from callcontrol.web.api.auth import Caller
from callcontrol.web.api.endpoint import ApiCall, Route
from callcontrol.web.api.errors import NotFound, invalid
from callcontrol.web.api.forwarding import check_destination
from callcontrol.web.api.schemas import (
    BulkPurchase,
    NumberList,
    NumberOut,
    NumberSettings,
    PageQuery,
    PoolList,
    PoolNumber,
    PoolQuery,
    Purchase,
    Reservation,
    TestRequest,
)

TAG = "numbers"


async def search_pool(call: ApiCall) -> PoolList:
    q = call.query_as(PoolQuery)
    async with call.sessions() as session:
        rows = await listings.pool(
            session, listings.Page(q.limit, q.offset), country_code=q.country_code,
            region=q.region, city=q.city, kind=q.kind,
        )  # fmt: skip
        return PoolList(items=[PoolNumber.model_validate(r) for r in rows])


async def list_numbers(call: ApiCall) -> NumberList:
    page = call.query_as(PageQuery)
    async with call.sessions() as session:
        owner = await lookup.account(session, call.caller, call.id("account_id"))
        rows = await listings.numbers_of(session, owner.id, listings.Page(page.limit, page.offset))
        return NumberList(items=await lookup.number_outs(session, rows))


async def get_number(call: ApiCall) -> NumberOut:
    async with call.sessions() as session:
        return await lookup.one_number_out(
            session, await lookup.number(session, call.caller, call.did())
        )


async def _number_out(call: ApiCall, number_id: int) -> NumberOut:
    async with call.sessions() as session:
        row = await listings.number_by_id(session, number_id)
        assert row is not None
        return await lookup.one_number_out(session, row)


async def _takeable(session: AsyncSession, caller: Caller, account_id: int, raw: str) -> int:
    """The id of a pool number named in a body: 404 unless the account may take it."""
    try:
        did = parse_did(raw).e164
    except InvalidInput as exc:
        raise invalid("body.did", str(exc)) from None
    row = await listings.number_by_did(session, did)
    mine = row is not None and row.state is NumberState.RESERVED and row.account_id == account_id
    if row is None or not (caller.is_operator or row.state is NumberState.AVAILABLE or mine):
        raise NotFound(f"number {did} is not in the pool")
    return row.id


async def reserve(call: ApiCall) -> NumberOut:
    body = call.body_as(Reservation)
    async with call.sessions() as session:
        owner = await lookup.account(session, call.caller, call.id("account_id"))
        if not call.caller.is_operator:
            await quotas.check_numbers(session, call.settings.quotas, owner.id)
        number_id = await _takeable(session, call.caller, owner.id, body.did)
    await call.numbers.reserve(number_id, owner.id)
    return await _number_out(call, number_id)


async def release(call: ApiCall) -> NumberOut:
    async with call.sessions() as session:
        row = await lookup.owned_number(session, call.caller, call.did())
    holder = None if call.caller.is_operator else call.caller.account_id
    await call.numbers.release(row.id, holder)
    return await _number_out(call, row.id)


async def purchase(call: ApiCall) -> NumberOut:
    body = call.body_as(Purchase)
    async with call.sessions() as session:
        owner = await lookup.account(session, call.caller, call.id("account_id"))
        if not call.caller.is_operator:
            await quotas.check_numbers(session, call.settings.quotas, owner.id)
        chosen = None
        if body.did is not None:
            chosen = await _takeable(session, call.caller, owner.id, body.did)
    if chosen is not None:
        change = await call.numbers.buy(chosen, owner.id)
    else:
        assert body.region is not None
        change = await call.numbers.buy_automatic(owner.id, body.region, body.city, body.kind)
    return await _number_out(call, change.number_id)


async def bulk_purchase(call: ApiCall) -> NumberList:
    body = call.body_as(BulkPurchase)
    async with call.sessions() as session:
        owner = await lookup.account(session, call.caller, call.id("account_id"))
        if not call.caller.is_operator:
            adding = len(body.dids)
            await quotas.check_numbers(session, call.settings.quotas, owner.id, adding=adding)
        ids = [await _takeable(session, call.caller, owner.id, did) for did in body.dids]
    changes = await call.numbers.buy_many(ids, owner.id)
    return NumberList(items=[await _number_out(call, c.number_id) for c in changes])


async def start_test(call: ApiCall) -> NumberOut:
    body = call.body_as(TestRequest)
    async with call.sessions() as session:
        owner = await lookup.account(session, call.caller, call.id("account_id"))
        target = await check_destination(
            session, call.destinations, owner.id, body.destination, "body.destination"
        )
        chosen = None
        if body.did is not None:
            chosen = await _takeable(session, call.caller, owner.id, body.did)
    forward_to = ForwardTo(body.destination.type, target, body.destination.timeout_s)
    change = await call.numbers.start_test(
        owner.id, forward_to, number_id=chosen, region=None if chosen else body.region
    )
    return await _number_out(call, change.number_id)


async def delete_number(call: ApiCall) -> NumberOut:
    async with call.sessions() as session:
        row = await lookup.owned_number(session, call.caller, call.did())
    actor = None if call.caller.is_operator else call.caller.account_id
    await call.numbers.delete(row.id, actor)
    return await _number_out(call, row.id)


async def _check_media(
    session: AsyncSession, number: Number, media_id: int | None, kind: MediaKind, field: str
) -> None:
    if media_id is None:
        return
    found = await listings.media_file(session, media_id)
    if found is None or found.account_id != number.account_id:
        raise invalid(field, f"no stored file {media_id} of this number's account")
    if found.kind is not kind:
        raise invalid(field, f"file {media_id} is a {found.kind.value}, not a {kind.value}")


async def update_number(call: ApiCall) -> NumberOut:
    body = call.body_as(NumberSettings)
    sent = body.model_fields_set
    async with call.sessions() as session, session.begin():
        row = await lookup.owned_number(session, call.caller, call.did())
        greeting, vm_greeting = body.greeting_media_id, body.voicemail_greeting_media_id
        await _check_media(session, row, greeting, MediaKind.GREETING, "body.greeting_media_id")
        await _check_media(
            session, row, vm_greeting, MediaKind.VOICEMAIL_GREETING,
            "body.voicemail_greeting_media_id",
        )  # fmt: skip
        if body.voicemail_enabled is not None:
            row.voicemail_enabled = body.voicemail_enabled
        if "greeting_media_id" in sent:
            row.greeting_media_id = greeting
        if "voicemail_greeting_media_id" in sent:
            row.voicemail_greeting_media_id = vm_greeting
        await session.flush()
        return await lookup.one_number_out(session, row)


NUM = "/api/v1/numbers/{did}"
ACC = "/api/v1/accounts/{account_id}"
ROUTES = [
    Route("GET", "/api/v1/pool", search_pool, "Search available numbers", TAG,
          query=PoolQuery, response=PoolList),
    Route("GET", ACC + "/numbers", list_numbers, "The account's numbers", TAG,
          query=PageQuery, response=NumberList),
    Route("POST", ACC + "/reservations", reserve, "Reserve a number of the pool", TAG,
          body=Reservation, response=NumberOut, status=201, errors=(409,)),
    Route("POST", ACC + "/purchases", purchase, "Buy a chosen number or, in automatic "
          "mode, any of a region (and city)", TAG, body=Purchase, response=NumberOut,
          status=201, errors=(409,)),
    Route("POST", ACC + "/bulk-purchases", bulk_purchase, "Buy several chosen numbers at "
          "once (5 or more: the negotiated volume discount on the setup fees)", TAG,
          body=BulkPurchase, response=NumberList, status=201, errors=(409,)),
    Route("POST", ACC + "/tests", start_test, "Borrow a voice number for a one-hour test",
          TAG, body=TestRequest, response=NumberOut, status=201, errors=(409,)),
    Route("GET", NUM, get_number, "A number: state, next charge date, settings", TAG,
          response=NumberOut),
    Route("PATCH", NUM, update_number, "Voicemail on/off; which stored greetings play", TAG,
          body=NumberSettings, response=NumberOut),
    Route("POST", NUM + "/release", release, "Release a reservation", TAG,
          response=NumberOut, errors=(409,)),
    Route("DELETE", NUM, delete_number, "Delete (give up) a number", TAG,
          response=NumberOut, errors=(409,)),
]  # fmt: skip
