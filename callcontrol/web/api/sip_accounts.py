"""SIP accounts of a customer: create, list, reset the password, delete.

The API decides who may touch which SIP account (an object of another account
is a 404, as if it did not exist), names a login when none is given, and speaks
the schemas. Everything else is the provisioner's (``ProvisioningService``):
the password is generated there, shown once in the answer and stored only as the
HA1 digest bound to the provisioning realm; Asterisk is told of every change;
deleting a SIP account also removes the forwarding destinations of the owner's
numbers that rang it. A login in use is a 409, a login the provisioning rules
refuse (reserved names ...) a 422. Which number a SIP account presents is
chosen in ``callerid.py``.
"""

from __future__ import annotations

import secrets

from callcontrol.db.models import SipAccount
from callcontrol.repositories import listings
from callcontrol.services import quotas
from callcontrol.web.api import lookup
from callcontrol.web.api.endpoint import ApiCall, Route
from callcontrol.web.api.errors import Conflict, NotFound
from callcontrol.web.api.schemas import (
    PageQuery,
    SipAccountCreate,
    SipAccountCredentials,
    SipAccountList,
    SipAccountOut,
)
from provisioning.service import LoginTaken, SipAccountNotFound

TAG = "sip-accounts"


def _generated_login(account_id: int) -> str:
    return f"u{account_id}x{secrets.token_hex(4)}"


async def _credentials(call: ApiCall, row: SipAccount, password: str) -> SipAccountCredentials:
    async with call.sessions() as session:
        shown = await lookup.sip_account_out(session, row)
    return SipAccountCredentials(**shown.model_dump(), password=password)


async def _owned_login(call: ApiCall) -> str:
    """The login of the path's SIP account, if the caller may see it (else 404)."""
    async with call.sessions() as session:
        row = await lookup.sip_account(session, call.caller, call.id("sip_account_id"))
        return row.login


def _gone(call: ApiCall) -> NotFound:
    # Deleted between the ownership check and the provisioner's own transaction.
    return NotFound(f"SIP account {call.id('sip_account_id')} not found")


async def create_sip_account(call: ApiCall) -> SipAccountCredentials:
    body = call.body_as(SipAccountCreate)
    async with call.sessions() as session:
        owner = await lookup.account(session, call.caller, call.id("account_id"))
        if not call.caller.is_operator:
            await quotas.check_sip_accounts(session, call.settings.quotas, owner.id)
    login = body.login or _generated_login(owner.id)
    try:
        row, password = await call.provisioner.create_sip_account(owner.id, login)
    except LoginTaken:
        raise Conflict(f"the SIP login {login!r} is taken; choose another") from None
    return await _credentials(call, row, password)


async def list_sip_accounts(call: ApiCall) -> SipAccountList:
    page = call.query_as(PageQuery)
    async with call.sessions() as session:
        owner = await lookup.account(session, call.caller, call.id("account_id"))
        page_ = listings.Page(page.limit, page.offset)
        rows = await listings.sip_accounts_of(session, owner.id, page_)
        return SipAccountList(items=await lookup.sip_account_outs(session, rows))


async def get_sip_account(call: ApiCall) -> SipAccountOut:
    async with call.sessions() as session:
        row = await lookup.sip_account(session, call.caller, call.id("sip_account_id"))
        return await lookup.sip_account_out(session, row)


async def reset_password(call: ApiCall) -> SipAccountCredentials:
    login = await _owned_login(call)
    try:
        row, password = await call.provisioner.reset_password(login)
    except SipAccountNotFound:
        raise _gone(call) from None
    return await _credentials(call, row, password)


async def delete_sip_account(call: ApiCall) -> None:
    login = await _owned_login(call)
    try:
        await call.provisioner.delete_sip_account(login)
    except SipAccountNotFound:
        raise _gone(call) from None


ACC = "/api/v1/accounts/{account_id}/sip-accounts"
ONE = "/api/v1/sip-accounts/{sip_account_id}"
ROUTES = [
    Route("POST", ACC, create_sip_account, "Create a SIP account (password shown once)", TAG,
          body=SipAccountCreate, response=SipAccountCredentials, status=201, errors=(409,)),
    Route("GET", ACC, list_sip_accounts, "The account's SIP accounts", TAG,
          query=PageQuery, response=SipAccountList),
    Route("GET", ONE, get_sip_account, "A SIP account", TAG, response=SipAccountOut),
    Route("POST", ONE + "/password", reset_password, "Reset the password (shown once)", TAG,
          response=SipAccountCredentials),
    Route("DELETE", ONE, delete_sip_account, "Delete a SIP account", TAG, status=204),
]  # fmt: skip
