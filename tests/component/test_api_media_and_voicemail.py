"""Greeting uploads (telephony WAV only, bounded), greeting choice, voicemail handling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer
from test_api_fixtures import Api, Customer, api_fixture, api_settings, stored_wavs, wav  # noqa: F401

from callcontrol.app import build_app
from callcontrol.db.models import MediaFile, VoicemailMessage
from callcontrol.keys import SESSIONS
from callcontrol.web.api.tokens import create_token

WAV = {"Content-Type": "audio/wav"}


async def _upload(api: Api, who: Customer, data: bytes, kind: str = "greeting") -> tuple[int, Any]:
    response = await api.client.post(
        f"/api/v1/accounts/{who.account_id}/media?kind={kind}&name=hello.wav",
        data=data, headers={**who.headers, **WAV},
    )  # fmt: skip
    return response.status, await response.json()


async def test_a_telephony_wav_is_stored_canonically_under_the_media_root(api: Api) -> None:
    customer = await api.customer()
    with_extra_chunk = wav()[:36] + b"LIST\x04\x00\x00\x00abcd" + wav()[36:]
    status, body = await _upload(api, customer, with_extra_chunk)
    async with api.sessions() as session:
        row = await session.get(MediaFile, body["id"])
    assert status == 201 and row is not None
    assert row.stored_name.startswith(f"greetings/{customer.account_id}/")
    assert (api.media_root / row.stored_name).read_bytes() == wav()
    assert (body["original_name"], body["duration_ms"]) == ("hello.wav", 100)


async def test_a_44_khz_stereo_file_is_refused_saying_what_is_wrong_and_expected(api: Api) -> None:
    customer = await api.customer()
    status, body = await _upload(api, customer, wav(rate=44100, channels=2))
    assert status == 422 and body["error"] == "wav_rejected"
    assert "44100 Hz" in body["message"] and "8000 Hz, 16-bit, mono" in body["message"]
    assert {d["message"] for d in body["details"]} == {"wrong_rate", "wrong_channels"}
    assert not stored_wavs(api.media_root)


async def test_an_mp3_is_refused_as_not_a_wav(api: Api) -> None:
    customer = await api.customer()
    status, body = await _upload(api, customer, b"ID3\x03\x00" + b"\x00" * 100)
    assert status == 422 and "MP3" in body["message"]


async def test_a_wrong_content_type_is_a_415(api: Api) -> None:
    customer = await api.customer()
    response = await api.client.post(
        f"/api/v1/accounts/{customer.account_id}/media?kind=greeting",
        data=wav(), headers={**customer.headers, "Content-Type": "image/png"},
    )  # fmt: skip
    assert response.status == 415


async def test_an_oversized_upload_is_a_413_and_nothing_is_stored(
    fresh_db_url: str, tmp_path: Path
) -> None:
    app = build_app(api_settings(fresh_db_url, tmp_path, max_upload_bytes=1000), call_engine=False)
    async with TestClient(TestServer(app)) as client:
        token = await create_token(app[SESSIONS], role="operator")
        created = await client.post(
            "/api/v1/accounts", json={"name": "A"}, headers={"Authorization": f"Bearer {token}"}
        )
        account_id = (await created.json())["id"]

        async def chunks() -> Any:  # no Content-Length: the bound must hold while reading
            for _ in range(100):
                yield b"\x00" * 1000

        response = await client.post(
            f"/api/v1/accounts/{account_id}/media?kind=greeting",
            data=chunks(), headers={"Authorization": f"Bearer {token}", **WAV},
        )  # fmt: skip
        body = await response.json()
    assert response.status == 413 and "1000" in body["message"]
    assert not stored_wavs(tmp_path)


async def test_a_stored_greeting_is_chosen_for_a_number_and_listed(api: Api) -> None:
    customer = await api.customer()
    did = await api.number(customer.account_id)
    _, greeting = await _upload(api, customer, wav())
    _, vm_greeting = await _upload(api, customer, wav(), kind="voicemail_greeting")
    chosen = await api.client.patch(
        f"/api/v1/numbers/{did}",
        json={"greeting_media_id": greeting["id"], "voicemail_greeting_media_id": vm_greeting["id"],
              "voicemail_enabled": True},
        headers=customer.headers,
    )  # fmt: skip
    listed = await api.client.get(
        f"/api/v1/accounts/{customer.account_id}/media", headers=customer.headers
    )
    number = await chosen.json()
    assert (number["greeting_media_id"], number["voicemail_greeting_media_id"]) == (
        greeting["id"],
        vm_greeting["id"],
    )
    assert number["voicemail_enabled"] is True
    assert [m["kind"] for m in (await listed.json())["items"]] == ["greeting", "voicemail_greeting"]


async def test_a_greeting_of_the_wrong_kind_or_account_cannot_be_chosen(api: Api) -> None:
    customer, other = await api.customer(), await api.customer()
    did = await api.number(customer.account_id)
    _, vm_greeting = await _upload(api, customer, wav(), kind="voicemail_greeting")
    _, foreign = await _upload(api, other, wav())
    wrong_kind = await api.client.patch(
        f"/api/v1/numbers/{did}",
        json={"greeting_media_id": vm_greeting["id"]},
        headers=customer.headers,
    )
    not_mine = await api.client.patch(
        f"/api/v1/numbers/{did}",
        json={"greeting_media_id": foreign["id"]},
        headers=customer.headers,
    )
    assert (wrong_kind.status, not_mine.status) == (422, 422)
    assert (await not_mine.json())["details"][0]["field"] == "body.greeting_media_id"


async def test_deleting_a_greeting_removes_file_and_row_and_silences_the_number(api: Api) -> None:
    customer = await api.customer()
    did = await api.number(customer.account_id)
    _, greeting = await _upload(api, customer, wav())
    await api.client.patch(
        f"/api/v1/numbers/{did}",
        json={"greeting_media_id": greeting["id"]},
        headers=customer.headers,
    )
    deleted = await api.client.delete(f"/api/v1/media/{greeting['id']}", headers=customer.headers)
    number = await (await api.client.get(f"/api/v1/numbers/{did}", headers=customer.headers)).json()
    assert deleted.status == 204 and number["greeting_media_id"] is None
    assert not stored_wavs(api.media_root)


async def test_voicemail_is_listed_downloaded_as_wav_and_deleted_with_its_file(api: Api) -> None:
    customer = await api.customer()
    message_id, path = await api.voicemail(customer.account_id)
    listed = await api.client.get(
        f"/api/v1/accounts/{customer.account_id}/voicemail", headers=customer.headers
    )
    audio = await api.client.get(f"/api/v1/voicemail/{message_id}/audio", headers=customer.headers)
    assert [m["id"] for m in (await listed.json())["items"]] == [message_id]
    assert audio.content_type == "audio/wav" and await audio.read() == path.read_bytes()
    deleted = await api.client.delete(f"/api/v1/voicemail/{message_id}", headers=customer.headers)
    async with api.sessions() as session:
        left = await session.scalar(sa.select(sa.func.count()).select_from(VoicemailMessage))
    assert deleted.status == 204 and left == 0 and not path.exists()
