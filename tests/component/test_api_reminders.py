"""Phone reminders through the HTTP API: the contact phone, the operator's prompt,
and the attempts a worker run leaves behind."""

from __future__ import annotations

import wave
from datetime import date
from io import BytesIO
from pathlib import Path
from typing import Any

from test_api_fixtures import Api, api_fixture, wav  # noqa: F401

from callcontrol.notify.reminder_calls import CallResult
from callcontrol.services.billing_run import LowBalanceNotice
from callcontrol.services.phone_reminders import PhoneReminderQueue, PhoneReminderWorker
from callcontrol.settings import PhoneReminderSettings

WAV = {"Content-Type": "audio/wav"}


async def _phone(api: Api, account_id: int, phone: Any, headers: dict[str, str]) -> Any:
    return await api.client.put(f"/api/v1/accounts/{account_id}/contact-phone",
                                json={"phone": phone}, headers=headers)  # fmt: skip


async def test_a_customer_sets_a_valid_contact_phone_and_removes_it(api: Api) -> None:
    owner = await api.customer()
    done = await _phone(api, owner.account_id, "+4930123456", owner.headers)
    assert done.status == 200
    assert await done.json() == {"account_id": owner.account_id, "phone": "+4930123456",
                                 "region": "DE"}  # fmt: skip
    got = await api.client.get(f"/api/v1/accounts/{owner.account_id}/contact-phone",
                               headers=api.operator)  # fmt: skip
    assert (await got.json())["phone"] == "+4930123456"
    cleared = await _phone(api, owner.account_id, None, owner.headers)
    assert (await cleared.json())["phone"] is None


async def test_a_contact_phone_that_is_not_valid_e164_is_a_422_on_body_phone(api: Api) -> None:
    owner = await api.customer()
    for bad in ("030123456", "+4930", "+49 30 123456", 4930123456):
        answer = await _phone(api, owner.account_id, bad, owner.headers)
        assert answer.status == 422, bad
        assert (await answer.json())["details"][0]["field"] == "body.phone"


async def test_the_operator_uploads_a_prompt_with_the_greeting_checks(api: Api) -> None:
    good = await api.client.put("/api/v1/reminder-prompt?name=notice.wav", data=wav(),
                                headers={**api.operator, **WAV})  # fmt: skip
    assert good.status == 200, await good.text()
    body = await good.json()
    assert body["original_name"] == "notice.wav" and body["duration_ms"] == 100
    stored = list((api.media_root / "prompts").glob("reminder-*.wav"))
    assert len(stored) == 1
    with wave.open(BytesIO(stored[0].read_bytes())) as audio:
        assert (audio.getframerate(), audio.getsampwidth(), audio.getnchannels()) == (8000, 2, 1)
    bad = await api.client.put("/api/v1/reminder-prompt", data=wav(rate=16000),
                               headers={**api.operator, **WAV})  # fmt: skip
    answer = await bad.json()
    assert bad.status == 422 and "16000 Hz" in answer["message"]
    assert len(list((api.media_root / "prompts").glob("*.wav"))) == 1


async def test_a_customer_may_not_upload_the_prompt(api: Api) -> None:
    owner = await api.customer()
    refused = await api.client.put("/api/v1/reminder-prompt", data=wav(),
                                   headers={**owner.headers, **WAV})  # fmt: skip
    assert refused.status == 403
    assert not (api.media_root / "prompts").exists()


async def test_the_account_sees_its_reminder_and_every_attempt(api: Api) -> None:
    owner = await api.customer()
    await _phone(api, owner.account_id, "+12125551234", owner.headers)  # New York
    await api.client.put("/api/v1/reminder-prompt", data=wav(), headers={**api.operator, **WAV})
    await PhoneReminderQueue(sessions=api.sessions).notify_low_balance(
        LowBalanceNotice(owner.account_id, date(2026, 12, 20), 0, 500,
                         "EUR", ("+4930777000",))
    )  # fmt: skip

    class Busy:
        async def call(self, **_: Any) -> CallResult:
            return CallResult(False, 17)

    all_day = PhoneReminderSettings(enabled=True, call_from_hour=0, call_until_hour=24)
    placed = await PhoneReminderWorker(sessions=api.sessions, caller=Busy(), settings=all_day,
                                       prompt_root=Path("/srv")).run_due()  # fmt: skip
    assert placed == 1
    listed = await (await api.client.get(f"/api/v1/accounts/{owner.account_id}/phone-reminders",
                                         headers=owner.headers)).json()  # fmt: skip
    [item] = listed["items"]
    assert (item["due_on"], item["amount_minor"], item["state"]) == ("2026-12-20", 500, "pending")
    assert [(a["attempt"], a["outcome"], a["cause"], a["phone"]) for a in item["attempts"]] == [
        (1, "busy", 17, "+12125551234")
    ]
