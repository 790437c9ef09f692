"""Reminders by phone: the account's contact phone, the operator's prompt, the attempts.

- ``PUT /accounts/{id}/contact-phone`` ``{"phone": "+4930..."}`` (``null`` removes
  it): E.164, valid per phonenumbers, else a 422 on ``body.phone``; the customer
  sets its own, the operator any;
- ``PUT /reminder-prompt`` (operator): the notice's audio, with the greetings'
  checks (WAV PCM 8 kHz 16-bit mono, else a 422 saying what the file is) and
  stored canonically under ``prompts/``; the newest upload plays;
- ``GET /accounts/{id}/phone-reminders``: every reminder and every attempt.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

import sqlalchemy as sa
from pydantic import Field, StringConstraints

from callcontrol.db.money_models import (
    AccountContact,
    PhoneReminder,
    PhoneReminderAttempt,
    ReminderPrompt,
)
from callcontrol.db.types import utcnow
from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.phone_reminders import parse_contact_phone
from callcontrol.domain.wav import canonical_wav, require_telephony_wav
from callcontrol.repositories import media_files as files
from callcontrol.web.api import lookup
from callcontrol.web.api.endpoint import ApiCall, Route, read_bounded
from callcontrol.web.api.errors import UnsupportedMediaType, invalid
from callcontrol.web.api.openapi import UPLOAD_TYPES
from callcontrol.web.api.schemas import NO_NUL, Input, Output

TAG = "phone reminders"
_ACCEPTED = {*UPLOAD_TYPES, "audio/x-wav", "audio/wave", "audio/vnd.wave"}


class ContactPhoneIn(Input):
    phone: Annotated[str, StringConstraints(max_length=32, pattern=NO_NUL)] | None = Field(
        description="E.164, e.g. +4930123456; null removes it"
    )


class ContactPhoneOut(Output):
    account_id: int
    phone: str | None
    region: str | None = Field(default=None, description="ISO 3166 country of the phone")


class PromptQuery(Input):
    name: Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=NO_NUL)] = (
        "reminder.wav"
    )


class PromptOut(Output):
    id: int
    original_name: str
    size_bytes: int
    duration_ms: int
    created_at: datetime


class AttemptOut(Output):
    attempt: int
    phone: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    cause: int | None


class ReminderOut(Output):
    id: int
    due_on: date
    number: str
    amount_minor: int
    currency: str
    state: str
    attempts: list[AttemptOut]
    next_attempt_at: datetime | None


class ReminderList(Output):
    items: list[ReminderOut]


def _contact_out(account_id: int, phone: str | None) -> ContactPhoneOut:
    region = parse_contact_phone(phone).region if phone else None
    return ContactPhoneOut(account_id=account_id, phone=phone, region=region)


async def set_contact_phone(call: ApiCall) -> ContactPhoneOut:
    raw = call.body_as(ContactPhoneIn).phone
    try:
        phone = None if raw is None else parse_contact_phone(raw).e164
    except InvalidInput as exc:
        raise invalid("body.phone", str(exc)) from None
    async with call.sessions() as session, session.begin():
        account = await lookup.account(session, call.caller, call.id("account_id"))
        row = await session.get(AccountContact, account.id)
        if phone is None:
            if row is not None:
                await session.delete(row)
        elif row is None:
            session.add(AccountContact(account_id=account.id, phone=phone, updated_at=utcnow()))
        else:
            row.phone, row.updated_at = phone, utcnow()
    return _contact_out(account.id, phone)


async def get_contact_phone(call: ApiCall) -> ContactPhoneOut:
    async with call.sessions() as session:
        account = await lookup.account(session, call.caller, call.id("account_id"))
        row = await session.get(AccountContact, account.id)
    return _contact_out(account.id, row.phone if row else None)


async def upload_reminder_prompt(call: ApiCall) -> PromptOut:
    query = call.query_as(PromptQuery)
    if call.request.content_type not in _ACCEPTED:
        raise UnsupportedMediaType(
            f"send the file as audio/wav (raw body), not {call.request.content_type}"
        )
    limit = call.media.max_upload_bytes
    data = await read_bounded(call.request, limit, "the file")
    info = require_telephony_wav(data, max_bytes=limit)
    audio = canonical_wav(data, info)
    stored_name = f"prompts/reminder-{uuid.uuid4()}.wav"
    await files.write(call.media.root, stored_name, audio)
    try:
        async with call.sessions() as session, session.begin():
            row = ReminderPrompt(
                original_name=query.name, stored_name=stored_name, size_bytes=len(audio),
                duration_ms=info.duration_ms, created_at=utcnow(),
            )  # fmt: skip
            session.add(row)
            await session.flush()
    except BaseException:
        await files.remove(call.media.root, stored_name)
        raise
    return PromptOut.model_validate(row)


async def list_phone_reminders(call: ApiCall) -> ReminderList:
    async with call.sessions() as session:
        account = await lookup.account(session, call.caller, call.id("account_id"))
        reminders = list(await session.scalars(
            sa.select(PhoneReminder).where(PhoneReminder.account_id == account.id)
            .order_by(PhoneReminder.created_at.desc(), PhoneReminder.id.desc())
        ))  # fmt: skip
        attempts = list(await session.scalars(
            sa.select(PhoneReminderAttempt)
            .where(PhoneReminderAttempt.reminder_id.in_([r.id for r in reminders]))
            .order_by(PhoneReminderAttempt.attempt)
        ))  # fmt: skip
    return ReminderList(items=[
        ReminderOut(
            id=r.id, due_on=r.due_on, number=r.number, amount_minor=r.amount_minor,
            currency=r.currency, state=r.state, next_attempt_at=r.next_attempt_at,
            attempts=[AttemptOut.model_validate(a) for a in attempts if a.reminder_id == r.id],
        )
        for r in reminders
    ])  # fmt: skip


ROUTES = [
    Route("PUT", "/api/v1/accounts/{account_id}/contact-phone", set_contact_phone,
          "Set the phone reminders are called on (E.164; null removes it)", TAG,
          body=ContactPhoneIn, response=ContactPhoneOut),
    Route("GET", "/api/v1/accounts/{account_id}/contact-phone", get_contact_phone,
          "The account's contact phone", TAG, response=ContactPhoneOut),
    Route("PUT", "/api/v1/reminder-prompt", upload_reminder_prompt,
          "Upload the reminder notice (WAV PCM 8 kHz 16-bit mono); the newest plays", TAG,
          operator_only=True, query=PromptQuery, response=PromptOut, upload=True),
    Route("GET", "/api/v1/accounts/{account_id}/phone-reminders", list_phone_reminders,
          "The account's phone reminders and every call attempt", TAG, response=ReminderList),
]  # fmt: skip
