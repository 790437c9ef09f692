"""SIP accounts of a customer: create, list, reset the password, delete.

The password is generated (``provisioning.digest.generate_password``), shown once
in the answer and stored only as the HA1 digest bound to the configured realm.
After each committed change the ``SipAccountsChanged`` hook is told, so
provisioning can push the accounts to Asterisk. Deleting a SIP account also
removes the forwarding destinations of the account's numbers that rang it.
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
import structlog
from sqlalchemy.exc import IntegrityError

from callcontrol.db.models import ForwardingDestination, Number, SipAccount
from callcontrol.domain.vocabulary import DestinationType
from callcontrol.web.api import lookup
from callcontrol.web.api.endpoint import ApiCall, Route
from callcontrol.web.api.errors import Conflict
from callcontrol.web.api.schemas import (
    PageQuery,
    SipAccountCreate,
    SipAccountCredentials,
    SipAccountList,
    SipAccountOut,
)
from provisioning.digest import generate_password, ha1_md5

TAG = "sip-accounts"
log = structlog.get_logger(__name__)


async def _tell_provisioning(call: ApiCall, account_id: int) -> None:
    # The change is committed and a password may be in the answer: a failing hook
    # is logged (provisioning retries from the table), never turned into an error.
    try:
        await call.sip_hook(account_id)
    except Exception as exc:
        log.warning("sip_accounts_hook_failed", account_id=account_id, error=repr(exc)[:300])


def _generated_login(account_id: int) -> str:
    return f"u{account_id}x{secrets.token_hex(4)}"


def _credentials(row: SipAccount, password: str) -> SipAccountCredentials:
    return SipAccountCredentials(
        **SipAccountOut.model_validate(row).model_dump(), password=password
    )


async def create_sip_account(call: ApiCall) -> SipAccountCredentials:
    body = call.body_as(SipAccountCreate)
    password = generate_password()
    try:
        async with call.sessions() as session, session.begin():
            owner = await lookup.account(session, call.caller, call.id("account_id"))
            login = body.login or _generated_login(owner.id)
            row = SipAccount(
                account_id=owner.id, login=login, domain=call.api.sip_domain,
                password_digest=ha1_md5(login, call.api.sip_realm, password),
            )  # fmt: skip
            session.add(row)
            await session.flush()
            await session.refresh(row)
    except IntegrityError:
        raise Conflict(f"the SIP login {body.login!r} is taken; choose another") from None
    await _tell_provisioning(call, owner.id)
    return _credentials(row, password)


async def list_sip_accounts(call: ApiCall) -> SipAccountList:
    page = call.query_as(PageQuery)
    async with call.sessions() as session:
        owner = await lookup.account(session, call.caller, call.id("account_id"))
        rows = await session.scalars(
            sa.select(SipAccount)
            .where(SipAccount.account_id == owner.id)
            .order_by(SipAccount.id)
            .limit(page.limit)
            .offset(page.offset)
        )
        return SipAccountList(items=[SipAccountOut.model_validate(r) for r in rows])


async def get_sip_account(call: ApiCall) -> SipAccountOut:
    async with call.sessions() as session:
        row = await lookup.sip_account(session, call.caller, call.id("sip_account_id"))
        return SipAccountOut.model_validate(row)


async def reset_password(call: ApiCall) -> SipAccountCredentials:
    password = generate_password()
    async with call.sessions() as session, session.begin():
        row = await lookup.sip_account(session, call.caller, call.id("sip_account_id"))
        row.password_digest = ha1_md5(row.login, call.api.sip_realm, password)
    await _tell_provisioning(call, row.account_id)
    return _credentials(row, password)


def _forwarding_to(row: SipAccount) -> sa.Delete:
    """The account's forwarding destinations that ring this SIP account."""
    numbers = sa.select(Number.id).where(Number.account_id == row.account_id)
    return sa.delete(ForwardingDestination).where(
        ForwardingDestination.type == DestinationType.SIP_ACCOUNT,
        ForwardingDestination.target == row.login,
        ForwardingDestination.number_id.in_(numbers),
    )


async def delete_sip_account(call: ApiCall) -> None:
    async with call.sessions() as session, session.begin():
        row = await lookup.sip_account(session, call.caller, call.id("sip_account_id"))
        await session.execute(_forwarding_to(row))
        await session.delete(row)
    await _tell_provisioning(call, row.account_id)


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
