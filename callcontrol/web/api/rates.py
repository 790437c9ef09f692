"""The PSTN price list: every caller reads it (customers see what forwarding to
phones costs); the operator adds, imports (CSV, all or nothing), edits and
deletes rates. ``?number=`` answers the one rate that applies (longest prefix)."""

from __future__ import annotations

from callcontrol.domain.rate_sheet import RateRow, check_prefix, parse_rate_sheet
from callcontrol.services import rates
from callcontrol.services.inventory import ImportRefused
from callcontrol.web.api.endpoint import ApiCall, Route
from callcontrol.web.api.errors import invalid
from callcontrol.web.api.inventory import refused
from callcontrol.web.api.schemas import (
    MAX_IMPORT_BYTES,
    RateEdit,
    RateImport,
    RateImportOut,
    RateIn,
    RateList,
    RateOut,
    RateQuery,
)

TAG = "rates"


async def list_rates(call: ApiCall) -> RateList:
    q = call.query_as(RateQuery)
    async with call.sessions() as session:
        if q.number is not None:
            found = await rates.rate_for(session, q.number.lstrip("+"))
            return RateList(items=[RateOut.model_validate(found)] if found else [])
        prefix = q.prefix.lstrip("+") if q.prefix else None
        rows = await rates.list_rates(session, prefix=prefix, limit=q.limit, offset=q.offset)
        return RateList(items=[RateOut.model_validate(r) for r in rows])


async def add_rate(call: ApiCall) -> RateOut:
    body = call.body_as(RateIn)
    row = RateRow(
        0, check_prefix(body.prefix), body.rate_per_minute_minor, body.currency, body.description
    )
    async with call.sessions() as session, session.begin():
        return RateOut.model_validate(await rates.add_rate(session, row))


async def import_rates(call: ApiCall) -> RateImportOut:
    body = call.body_as(RateImport)
    try:
        rows, errors = parse_rate_sheet(body.csv)
    except ValueError as exc:
        raise invalid("body.csv", str(exc)) from None
    try:
        async with call.sessions() as session, session.begin():
            done = await rates.import_rates(session, rows, errors)
    except ImportRefused as exc:
        raise refused(exc.errors) from None
    return RateImportOut(added=done.added, updated=done.updated)


async def get_rate(call: ApiCall) -> RateOut:
    async with call.sessions() as session:
        return RateOut.model_validate(await rates.get_rate(session, call.id("rate_id")))


async def edit_rate(call: ApiCall) -> RateOut:
    body = call.body_as(RateEdit)
    async with call.sessions() as session, session.begin():
        changes = body.model_dump(exclude_none=True)
        rate = await rates.edit_rate(session, call.id("rate_id"), changes)
        return RateOut.model_validate(rate)


async def delete_rate(call: ApiCall) -> None:
    async with call.sessions() as session, session.begin():
        await rates.delete_rate(session, call.id("rate_id"))


BASE = "/api/v1/rates"
ONE = BASE + "/{rate_id}"
ROUTES = [
    Route("GET", BASE, list_rates, "The per-minute price list of calls to phones (PSTN)", TAG,
          query=RateQuery, response=RateList),
    Route("POST", BASE, add_rate, "Add a rate for a prefix", TAG, operator_only=True,
          body=RateIn, response=RateOut, status=201, errors=(409,)),
    Route("POST", BASE + "/imports", import_rates, "Import a rate sheet (CSV; all or nothing; "
          "a prefix present is updated)", TAG, operator_only=True, body=RateImport,
          response=RateImportOut, status=201, max_body_bytes=MAX_IMPORT_BYTES + 4096),
    Route("GET", ONE, get_rate, "A rate", TAG, response=RateOut),
    Route("PATCH", ONE, edit_rate, "Change a rate's price, currency or description", TAG,
          operator_only=True, body=RateEdit, response=RateOut),
    Route("DELETE", ONE, delete_rate, "Delete a rate (its destinations are then refused)", TAG,
          operator_only=True, status=204),
]  # fmt: skip
