"""The reminder Stasis app (``<app>-reminders``) is fenced like the engine's app.

Two reminder workers on one Asterisk (two engines, or an engine and
``callcontrol reminders call``) must not both connect: the second connection
would take the app from the first (``ApplicationReplaced``) and the first would
lose the events of its reminder calls. A fake ARI keeps the global variable the
lease lives in; the second worker stands by until the first stops.
"""

from __future__ import annotations

import asyncio
import functools

import aiohttp
import pytest
from support.fake_ari import FakeAri

from callcontrol import app as app_module
from callcontrol.app import reminder_worker
from callcontrol.engine.lease import AppLease
from callcontrol.services.phone_reminders import run_every
from callcontrol.settings import Settings

APP = "cc-lease-test"


def settings(url: str) -> Settings:
    return Settings(
        ari={"url": url, "password": "secret", "app": APP, "lease_ttl_s": 1.0},  # type: ignore[arg-type]
        phone_reminders={"enabled": True},  # type: ignore[arg-type]
    )


async def test_a_second_reminder_worker_stands_by_until_the_first_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Both workers live in this test process, whose command line does not say
    # "callcontrol": without this the lease would take the holder for dead.
    monkeypatch.setattr(app_module, "AppLease", functools.partial(AppLease, alive=lambda pid: True))
    ari = FakeAri()
    async with ari.running() as url, aiohttp.ClientSession() as http:
        first = reminder_worker(settings(url), None, http)  # type: ignore[arg-type]
        one = await first.__aenter__()
        await asyncio.wait_for(one.connected.wait(), 5)
        assert one.serving() and ari.ws_connections == 1
        second = reminder_worker(settings(url), None, http)  # type: ignore[arg-type]
        two = await second.__aenter__()
        try:
            await asyncio.sleep(1.5)  # longer than the lease's verify and poll
            assert not two.connected.is_set() and not two.serving()
            assert ari.ws_connections == 1  # it never took the app
            assert two.lease.other == one.lease.holder
            assert ari.global_variables[f"CALLCONTROL_LEASE_{APP.replace('-', '_')}_reminders"]
            await first.__aexit__(None, None, None)  # a clean stop releases the lease
            await asyncio.wait_for(two.connected.wait(), 5)
            assert two.serving() and ari.ws_connections == 2
        finally:
            await second.__aexit__(None, None, None)
        assert ari.ws_queries[-1]["app"] == f"{APP}-reminders"


class CountingWorker:
    def __init__(self) -> None:
        self.rounds = 0

    async def run_due(self) -> int:
        self.rounds += 1
        return 0


async def test_rounds_while_the_lease_is_anothers_call_nobody() -> None:
    worker, ready = CountingWorker(), {"now": False}
    task = asyncio.create_task(
        run_every(worker, 0.01, ready=lambda: ready["now"])  # type: ignore[arg-type]
    )
    try:
        await asyncio.sleep(0.1)
        assert worker.rounds == 0
        ready["now"] = True
        await asyncio.sleep(0.1)
        assert worker.rounds > 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
