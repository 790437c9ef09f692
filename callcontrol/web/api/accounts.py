"""Accounts and their balance: the operator opens accounts and tops them up
(through the ledger, the only place money moves); a customer reads and corrects
its own account (name, email). Which number it presents: ``callerid.py``."""

from __future__ import annotations

import uuid

from callcontrol.db.models import Account
from callcontrol.repositories import listings
from callcontrol.web.api import lookup
from callcontrol.web.api.endpoint import ApiCall, Route
from callcontrol.web.api.errors import Conflict
from callcontrol.web.api.schemas import (
    AccountCreate,
    AccountList,
    AccountOut,
    AccountUpdate,
    BalanceOut,
    PageQuery,
    TokenCreated,
    TokenCreateQuery,
    TopUp,
)
from callcontrol.web.api.tokens import add_token, expiry

TAG = "accounts"


async def list_accounts(call: ApiCall) -> AccountList:
    page = call.query_as(PageQuery)
    async with call.sessions() as session:
        rows = await listings.accounts(session, listings.Page(page.limit, page.offset))
        return AccountList(items=await lookup.account_outs(session, rows))


async def create_account(call: ApiCall) -> AccountOut:
    body = call.body_as(AccountCreate)
    async with call.sessions() as session, session.begin():
        row = Account(name=body.name, email=body.email, currency=body.currency)
        session.add(row)
        await session.flush()
        await session.refresh(row)
        return await lookup.account_out(session, row)


async def get_account(call: ApiCall) -> AccountOut:
    async with call.sessions() as session:
        row = await lookup.account(session, call.caller, call.id("account_id"))
        return await lookup.account_out(session, row)


async def update_account(call: ApiCall) -> AccountOut:
    body = call.body_as(AccountUpdate)
    async with call.sessions() as session, session.begin():
        row = await lookup.account(session, call.caller, call.id("account_id"))
        if row.erased_at is not None:
            raise Conflict(f"account {row.id} was erased; its personal data cannot come back")
        if body.name is not None:
            row.name = body.name
        if "email" in body.model_fields_set:
            row.email = body.email
        await session.flush()
        return await lookup.account_out(session, row)


async def top_up(call: ApiCall) -> BalanceOut:
    body = call.body_as(TopUp)
    async with call.sessions() as session:
        row = await lookup.account(session, call.caller, call.id("account_id"))
    # A key is the account's own: another account may use the same invoice number.
    key = f"top-up:{row.id}:" + (body.idempotency_key or str(uuid.uuid4()))
    # The service posts through the ledger and reactivates suspended numbers at once.
    done = await call.numbers.top_up(row.id, body.amount_minor, key)
    return BalanceOut(
        account_id=row.id,
        balance_minor=done.balance_minor,
        currency=row.currency,
        already_posted=not done.posted,
    )


async def create_customer_token(call: ApiCall) -> TokenCreated:
    q = call.query_as(TokenCreateQuery)
    async with call.sessions() as session, session.begin():
        row = await lookup.account(session, call.caller, call.id("account_id"))
        if row.erased_at is not None:
            raise Conflict(f"account {row.id} was erased and is closed")
        token = await add_token(
            session, role="customer", account_id=row.id, expires_at=expiry(q.expires_in_days),
            label=q.label,
        )  # fmt: skip
    return TokenCreated(token=token, role="customer", account_id=row.id)


BASE = "/api/v1/accounts"
ROUTES = [
    Route("GET", BASE, list_accounts, "List accounts", TAG, operator_only=True,
          query=PageQuery, response=AccountList),
    Route("POST", BASE, create_account, "Open an account", TAG, operator_only=True,
          body=AccountCreate, response=AccountOut, status=201),
    Route("GET", BASE + "/{account_id}", get_account, "An account and its balance", TAG,
          response=AccountOut),
    Route("PATCH", BASE + "/{account_id}", update_account, "Correct the name or email", TAG,
          body=AccountUpdate, response=AccountOut),
    Route("POST", BASE + "/{account_id}/top-ups", top_up, "Top up the balance", TAG,
          operator_only=True, body=TopUp, response=BalanceOut, status=201,
          errors=(409,)),  # the idempotency key was used for another amount
    Route("POST", BASE + "/{account_id}/tokens", create_customer_token,
          "Create a customer API token for the account (shown once)", TAG,
          operator_only=True, query=TokenCreateQuery, response=TokenCreated, status=201),
]  # fmt: skip
