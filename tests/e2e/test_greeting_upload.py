"""A greeting uploaded through the HTTP API is the one Asterisk plays to a real caller.

The customer works as the provider's cabinet does, over the running engine's
own HTTP API with a token made by ``callcontrol token create``: upload a WAV
(PCM 8 kHz 16-bit mono), choose it for the number; a stereo 44.1 kHz file is
refused with a 422 and changes nothing. Then SIPp calls the DID: Asterisk's
PlaybackFinished (logged by the engine with its media URI) names exactly the
stored file of that upload, finished ``done``, and the call is forwarded to
the far end after the greeting.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import struct
import subprocess
import sys
import urllib.error
import urllib.request
import wave
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support.asterisk import AsteriskSandbox
from support.data import Seeder
from support.engine import EngineProcess
from support.sipp import Sipp

from callcontrol.db.engine import create_engine, session_factory
from callcontrol.db.models import MediaFile
from callcontrol.domain.vocabulary import DestinationType
from callcontrol.settings import DatabaseSettings

pytestmark = pytest.mark.e2e

ASTERISK = "127.0.0.1:5060"
CARRIER, FAR_A = "127.0.0.2", "127.0.0.3"
CALLER_NUMBER = "4915112345678"
GREETING_S = 1.5


def pcm_wav(seconds: float, *, rate: int = 8000, channels: int = 1, hz: float = 440.0) -> bytes:
    """A 16-bit PCM tone as a WAV file, in memory."""
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * n / rate))) * channels
        for n in range(int(rate * seconds))
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(frames)
    return out.getvalue()


class ApiClient:
    """The engine's HTTP API, as a customer with a bearer token."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token

    def request(
        self, method: str, path: str, *, body: bytes | None = None, content_type: str = ""
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(
            self.base_url + path, data=body, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, self._decode(response.read(), response.headers)
        except urllib.error.HTTPError as error:
            return error.code, self._decode(error.read(), error.headers)

    @staticmethod
    def _decode(raw: bytes, headers: Any) -> Any:
        return json.loads(raw) if "json" in headers.get("Content-Type", "") else raw

    def upload_greeting(self, account_id: int, wav: bytes, name: str) -> tuple[int, Any]:
        return self.request(
            "POST", f"/api/v1/accounts/{account_id}/media?kind=greeting&name={name}",
            body=wav, content_type="audio/wav",
        )  # fmt: skip

    def choose_greeting(self, did: str, media_id: int) -> tuple[int, Any]:
        body = json.dumps({"greeting_media_id": media_id}).encode()
        return self.request(
            "PATCH", f"/api/v1/numbers/{did}", body=body, content_type="application/json"
        )


def customer_token(engine: EngineProcess, account_id: int) -> str:
    """``callcontrol token create --account N`` against the engine's own database."""
    done = subprocess.run(
        [sys.executable, "-m", "callcontrol.cli", "token", "create", "--account", str(account_id)],
        env=engine.env, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return done.stdout.strip().splitlines()[-1]


def stored_name(db_url: str, media_id: int) -> str:
    async def read() -> str:
        engine = create_engine(DatabaseSettings(url=db_url), pooled=False)
        try:
            async with session_factory(engine)() as session:
                name = await session.scalar(
                    sa.select(MediaFile.stored_name).where(MediaFile.id == media_id)
                )
        finally:
            await engine.dispose()
        assert name is not None, media_id
        return name

    return asyncio.run(read())


def playbacks(engine: EngineProcess, call_id: str) -> list[dict[str, Any]]:
    found = []
    for line in engine.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"playback_finished"' in line:
            event = json.loads(line)
            if event.get("call_id") == call_id:
                found.append(event)
    return found


def test_a_greeting_uploaded_through_the_api_is_played_and_a_bad_upload_changes_nothing(
    engine: EngineProcess, asterisk: AsteriskSandbox, data: Seeder, db_url: str, workdir: Path
) -> None:
    account = data.account()
    did = data.number(
        account, destinations=[(DestinationType.SIP_URI, f"sip:alice@{FAR_A}:5080", 10)]
    )
    api = ApiClient(engine.base_url, customer_token(engine, account))
    greeting = pcm_wav(GREETING_S)
    files_before = set(asterisk.media_dir.rglob("*"))  # the media folder outlives test runs

    uploaded_status, uploaded = api.upload_greeting(account, greeting, "welcome.wav")
    chosen_status, chosen = api.choose_greeting(did, uploaded["id"])
    bad_status, bad = api.upload_greeting(account, pcm_wav(0.5, rate=44100, channels=2), "hifi.wav")
    after_status, number = api.request("GET", f"/api/v1/numbers/{did}")
    _, media = api.request("GET", f"/api/v1/accounts/{account}/media")
    _, downloaded = api.request("GET", f"/api/v1/media/{uploaded['id']}/audio")

    assert uploaded_status == 201 and uploaded["duration_ms"] == int(GREETING_S * 1000)
    assert chosen_status == 200 and chosen["greeting_media_id"] == uploaded["id"]
    assert bad_status == 422 and bad["error"] == "wav_rejected", bad
    assert "44100 Hz" in bad["message"] and "8000 Hz, 16-bit, mono" in bad["message"]
    assert after_status == 200 and number["greeting_media_id"] == uploaded["id"]
    assert [m["id"] for m in media["items"]] == [uploaded["id"]]
    name = stored_name(db_url, uploaded["id"])
    on_disk = asterisk.media_dir / name
    assert on_disk.read_bytes() == greeting == downloaded  # already canonical: stored as sent
    new_files = {p for p in asterisk.media_dir.rglob("*") if p.is_file()} - files_before
    assert new_files == {on_disk}  # the refused file left nothing behind

    far = Sipp("far_answer.xml", FAR_A, 5080, workdir, variables={"answer_ms": "100"}).start()
    far.wait_ready()
    caller = Sipp(
        "caller_answered.xml", CARRIER, 5070, workdir, remote=ASTERISK, service=did,
        keys={"caller": CALLER_NUMBER}, duration_ms=3000,
    ).run()  # fmt: skip
    assert caller.ok, caller.describe()
    assert far.wait(15).ok
    cdr = data.wait_for_cdr(did)

    expected_uri = f"sound:{asterisk.media_asterisk_root}/{name.removesuffix('.wav')}"
    played = playbacks(engine, cdr["id"])  # the greeting, then the ringback tone
    sounds = [(p["media_uri"], p["state"]) for p in played if p["media_uri"].startswith("sound:")]
    assert sounds == [(expected_uri, "done")], played
    assert played[0]["media_uri"] == expected_uri
    assert cdr["disposition"] == "answered" and cdr["legs"][0]["outcome"] == "answered"
    leg_started = cdr["legs"][0]["started_at"]
    assert (leg_started - cdr["started_at"]).total_seconds() >= GREETING_S - 0.1
