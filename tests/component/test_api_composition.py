"""The API builds none of its collaborators: the composition root hands them over."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from test_api_fixtures import RecordingMailer, api_settings

from callcontrol.app import build_app
from callcontrol.web.api import add_api_routes
from callcontrol.web.api.config import DESTINATION_POLICY, NUMBER_SERVICE, PROVISIONER


async def test_the_api_alone_refuses_to_serve_without_the_roots_services() -> None:
    app = web.Application()
    add_api_routes(app)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    with pytest.raises(RuntimeError, match="PROVISIONER, NUMBER_SERVICE, DESTINATION_POLICY"):
        await client.start_server()
    await client.close()


async def test_the_root_wires_the_one_mailer_into_the_number_service(
    fresh_db_url: str, tmp_path: Path
) -> None:
    mailer = RecordingMailer()
    app = build_app(
        api_settings(fresh_db_url, tmp_path / "media"), call_engine=False, mailer=mailer
    )
    async with TestClient(TestServer(app)) as client:
        served = client.app
        assert served[NUMBER_SERVICE]._mailer is mailer
        assert PROVISIONER in served and DESTINATION_POLICY in served
        assert (await client.get("/openapi.json")).status == 200
