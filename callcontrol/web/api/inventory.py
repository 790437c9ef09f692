"""The operator's inventory and activations: import numbers (CSV or JSON, all or
nothing), list and search every number of every account, edit prices and
flags, retire a number; list pending numbers, activate one (optionally on a
given day), refuse an activation, accept the end user's documents.

The rules live in ``domain.inventory`` and ``services.inventory`` /
``services.numbers``; this module speaks the schemas and names each bad
import row by its line (``details[].field`` = ``line 3.e164``).
"""

from __future__ import annotations

from collections.abc import Sequence

from callcontrol.db.models import Number
from callcontrol.domain.inventory import RowError, csv_rows, parse_rows
from callcontrol.domain.vocabulary import NumberState
from callcontrol.services import inventory
from callcontrol.services.inventory import ImportRefused, InventoryEdit, InventoryFilter
from callcontrol.web.api import lookup
from callcontrol.web.api.endpoint import ApiCall, Route
from callcontrol.web.api.errors import Unprocessable, invalid
from callcontrol.web.api.schemas import (
    MAX_IMPORT_BYTES,
    ActivationIn,
    ImportOut,
    InventoryEditIn,
    InventoryImport,
    InventoryList,
    InventoryNumberOut,
    InventoryQuery,
    NumberOut,
    RefusalIn,
)

TAG = "inventory"


def refused(errors: Sequence[RowError]) -> Unprocessable:
    details = [{"field": f"line {e.line}.{e.field}", "message": e.message} for e in errors]
    return Unprocessable(f"{len(errors)} bad rows; nothing was imported", details)


async def import_inventory(call: ApiCall) -> ImportOut:
    body = call.body_as(InventoryImport)
    if body.csv is not None:
        try:
            raw = csv_rows(body.csv)
        except ValueError as exc:
            raise invalid("body.csv", str(exc)) from None
    else:
        raw = list(enumerate(body.numbers or [], 1))
    rows, errors = parse_rows(raw)
    try:
        async with call.sessions() as session, session.begin():
            count = await inventory.import_numbers(session, rows, errors)
    except ImportRefused as exc:
        raise refused(exc.errors) from None
    return ImportOut(imported=count)


async def _outs(call: ApiCall, rows: list[Number]) -> list[InventoryNumberOut]:
    async with call.sessions() as session:
        shown = await lookup.number_outs(session, rows)
    return [
        InventoryNumberOut(
            **out.model_dump(), reservable=row.reservable,
            expected_activation=row.expected_activation,
        )
        for out, row in zip(shown, rows, strict=True)
    ]  # fmt: skip


async def search_inventory(call: ApiCall) -> InventoryList:
    q = call.query_as(InventoryQuery)
    wanted = InventoryFilter(**q.model_dump())
    async with call.sessions() as session:
        rows = await inventory.search(session, wanted)
    return InventoryList(items=await _outs(call, rows))


async def pending_numbers(call: ApiCall) -> InventoryList:
    q = call.query_as(InventoryQuery)
    wanted = InventoryFilter(**{**q.model_dump(), "state": NumberState.PENDING})
    async with call.sessions() as session:
        rows = await inventory.search(session, wanted)
    return InventoryList(items=await _outs(call, rows))


async def edit_number(call: ApiCall) -> InventoryNumberOut:
    body = call.body_as(InventoryEditIn)
    sent = body.model_fields_set
    clear = frozenset(
        n for n in ("city", "expected_activation") if n in sent and getattr(body, n) is None
    )
    change = InventoryEdit(**body.model_dump(exclude_none=True), clear=clear)
    async with call.sessions() as session, session.begin():
        row = await inventory.edit(session, call.did(), change)
    return (await _outs(call, [row]))[0]


async def retire_number(call: ApiCall) -> None:
    async with call.sessions() as session, session.begin():
        await inventory.retire(session, call.did())


async def _number_id(call: ApiCall) -> int:
    async with call.sessions() as session:
        return (await inventory.number_by_did(session, call.did())).id


async def _answer(call: ApiCall, number_id: int) -> NumberOut:
    async with call.sessions() as session:
        row = await inventory.number_by_did(session, call.did())
        assert row.id == number_id
        return await lookup.one_number_out(session, row)


async def activate(call: ApiCall) -> NumberOut:
    body = call.body_as(ActivationIn)
    number_id = await _number_id(call)
    await call.numbers.activate(number_id, on=body.activated_on)
    return await _answer(call, number_id)


async def refuse_activation(call: ApiCall) -> NumberOut:
    body = call.body_as(RefusalIn)
    number_id = await _number_id(call)
    await call.numbers.refuse_activation(number_id, reason=body.reason)
    return await _answer(call, number_id)


async def accept_documents(call: ApiCall) -> NumberOut:
    number_id = await _number_id(call)
    await call.numbers.accept_documents(number_id)
    return await _answer(call, number_id)


INV = "/api/v1/inventory"
NUM = "/api/v1/numbers/{did}"
ROUTES = [
    Route("POST", INV, import_inventory, "Import numbers into the pool (CSV or JSON rows; "
          "all or nothing, bad rows named by line)", TAG, operator_only=True,
          body=InventoryImport, response=ImportOut, status=201,
          max_body_bytes=MAX_IMPORT_BYTES + 4096),
    Route("GET", INV, search_inventory, "Every number of every account, searched", TAG,
          operator_only=True, query=InventoryQuery, response=InventoryList),
    Route("PATCH", INV + "/{did}", edit_number, "Edit a number's prices and flags", TAG,
          operator_only=True, body=InventoryEditIn, response=InventoryNumberOut, errors=(409,)),
    Route("DELETE", INV + "/{did}", retire_number, "Retire an available number for good", TAG,
          operator_only=True, status=204, errors=(409,)),
    Route("GET", "/api/v1/activations", pending_numbers, "Numbers waiting for the carrier "
          "(pending)", TAG, operator_only=True, query=InventoryQuery, response=InventoryList),
    Route("POST", NUM + "/activation", activate, "Activate a pending number (charges the first "
          "month, mails the customer)", TAG, operator_only=True, body=ActivationIn,
          response=NumberOut, errors=(409,)),
    Route("POST", NUM + "/activation-refusal", refuse_activation, "Refuse a pending "
          "activation: back to the pool, setup fee refunded", TAG, operator_only=True,
          body=RefusalIn, response=NumberOut, errors=(409,)),
    Route("POST", NUM + "/documents-acceptance", accept_documents, "Accept the end user's "
          "documents of a pending number (activation may then proceed)", TAG,
          operator_only=True, response=NumberOut, errors=(409,)),
]  # fmt: skip
