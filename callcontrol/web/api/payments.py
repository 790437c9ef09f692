"""Company details and bank transfers.

The operator makes an account a company account (legal name, address, tax id,
contract number) and records the bank transfers it receives, each once by the
bank's reference (``services.payments`` keeps the rules). The customer reads
its own company details and payments; another account's are a 404.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated

from pydantic import BeforeValidator, Field, StringConstraints

from callcontrol.db.money_models import BankPayment, CompanyProfile
from callcontrol.services.payments import PaymentService, set_company
from callcontrol.web.api import lookup
from callcontrol.web.api.endpoint import ApiCall, Route
from callcontrol.web.api.errors import NotFound
from callcontrol.web.api.schemas import MAX_MINOR, Input, Output

TAG = "companies and payments"
_ISO_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _day_string(value: object) -> object:
    # Strict JSON bodies still need a day: a "YYYY-MM-DD" string and nothing else
    # (lax date parsing would take 0 or a timestamp).
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DAY.match(value):
        raise ValueError("expected a day as YYYY-MM-DD")
    return date.fromisoformat(value)


BodyDay = Annotated[date, BeforeValidator(_day_string)]
_LINE = r"^[^\x00]*[^\x00\s][^\x00]*$"  # not blank, no NUL


class CompanyIn(Input):
    legal_name: Annotated[str, StringConstraints(min_length=1, max_length=300, pattern=_LINE)]
    address: Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=_LINE)]
    tax_id: Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=_LINE)]
    contract_number: Annotated[str, StringConstraints(min_length=1, max_length=60, pattern=_LINE)]


class CompanyOut(Output):
    account_id: int
    legal_name: str
    address: str
    tax_id: str
    contract_number: str
    updated_at: datetime


class BankPaymentIn(Input):
    reference: Annotated[
        str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][!-~]*$")
    ] = Field(description="the bank's reference of the transfer; recorded once")
    amount_minor: Annotated[int, Field(ge=1, le=MAX_MINOR)]
    received_on: BodyDay = Field(description="the day the bank credited the transfer")


class BankPaymentOut(Output):
    id: int
    account_id: int
    reference: str
    amount_minor: int
    currency: str
    received_on: date
    recorded_at: datetime


class BankPaymentRecorded(BankPaymentOut):
    balance_minor: int
    already_recorded: bool = Field(description="true: this reference was recorded before")


class BankPaymentList(Output):
    items: list[BankPaymentOut]


def _payments(call: ApiCall) -> PaymentService:
    return PaymentService(sessions=call.sessions, top_ups=call.numbers)


async def set_company_details(call: ApiCall) -> CompanyOut:
    body = call.body_as(CompanyIn)
    async with call.sessions() as session, session.begin():
        account = await lookup.account(session, call.caller, call.id("account_id"))
        row = await set_company(
            session, account.id, legal_name=body.legal_name, address=body.address,
            tax_id=body.tax_id, contract_number=body.contract_number,
        )  # fmt: skip
        return CompanyOut.model_validate(row)


async def get_company_details(call: ApiCall) -> CompanyOut:
    async with call.sessions() as session:
        account = await lookup.account(session, call.caller, call.id("account_id"))
        row = await session.get(CompanyProfile, account.id)
        if row is None:
            raise NotFound(f"account {account.id} is not a company account")
        return CompanyOut.model_validate(row)


async def record_bank_payment(call: ApiCall) -> BankPaymentRecorded:
    body = call.body_as(BankPaymentIn)
    async with call.sessions() as session:
        account = await lookup.account(session, call.caller, call.id("account_id"))
    done = await _payments(call).record(
        account.id, reference=body.reference, amount_minor=body.amount_minor,
        received_on=body.received_on,
    )  # fmt: skip
    return BankPaymentRecorded(
        **_payment_out(done.payment).model_dump(),
        balance_minor=done.balance_minor,
        already_recorded=not done.created,
    )


def _payment_out(row: BankPayment) -> BankPaymentOut:
    return BankPaymentOut.model_validate(row)


async def list_bank_payments(call: ApiCall) -> BankPaymentList:
    async with call.sessions() as session:
        account = await lookup.account(session, call.caller, call.id("account_id"))
    rows = await _payments(call).list_for(account.id)
    return BankPaymentList(items=[_payment_out(row) for row in rows])


BASE = "/api/v1/accounts/{account_id}"
ROUTES = [
    Route("PUT", BASE + "/company", set_company_details,
          "Make the account a company account, or correct its details", TAG,
          operator_only=True, body=CompanyIn, response=CompanyOut),
    Route("GET", BASE + "/company", get_company_details, "The account's company details", TAG,
          response=CompanyOut),
    Route("POST", BASE + "/bank-payments", record_bank_payment,
          "Record a bank transfer received (once per bank reference)", TAG,
          operator_only=True, body=BankPaymentIn, response=BankPaymentRecorded, status=201,
          errors=(409,)),  # the reference was recorded with another account, amount or date
    Route("GET", BASE + "/bank-payments", list_bank_payments,
          "The bank transfers recorded for the account", TAG, response=BankPaymentList),
]  # fmt: skip
