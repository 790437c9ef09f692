"""The composition root: every component is built and wired here, once.

Each resource is an aiohttp ``cleanup_ctx`` (opened in order, closed in
reverse): the database engine, the HTTP client session to Asterisk, the call
engine (dispatcher + ARI event stream). Components get their collaborators as
keyword arguments; nothing is a module-level singleton.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime

import aiohttp
import structlog
import uvloop
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.ari import events as ari_events
from callcontrol.ari.client import AriClient
from callcontrol.ari.events import AriEvent
from callcontrol.ari.stream import AriEventStream
from callcontrol.db.engine import create_engine, session_factory
from callcontrol.domain.outbound import OutboundPolicy
from callcontrol.domain.routing import EndpointNames, RoutingPolicy
from callcontrol.engine.call_runner import CallRunner
from callcontrol.engine.dispatcher import Dispatcher
from callcontrol.engine.routers import CallRouter, DirectionRouter, InboundRouter, OutboundRouter
from callcontrol.engine.supervisor import TaskSupervisor
from callcontrol.engine.translate import WANTED_EVENTS
from callcontrol.keys import DB_ENGINE, ENGINE, HTTP_CLIENT, SESSIONS, SETTINGS, CallEngine
from callcontrol.metrics import CALL_METRICS, CallMetrics, CountingLedger, TimedRouter
from callcontrol.notify.mailer import SmtpMailer
from callcontrol.notify.voicemail import MailingVoicemailBox
from callcontrol.repositories.cdrs import SqlCallLedger
from callcontrol.repositories.numbers import SqlNumberDirectory
from callcontrol.repositories.personal_data import PurgeResult, purge_expired
from callcontrol.repositories.sip_accounts import SqlSipAccountDirectory
from callcontrol.services.destinations import destination_policy
from callcontrol.services.numbers import Clock, utc_now
from callcontrol.services.privacy_purge import PrivacyPurgeScheduler
from callcontrol.services.scheduler import BillingScheduler
from callcontrol.settings import Settings
from callcontrol.web.api import add_api_routes
from callcontrol.web.health import add_health_routes

log = structlog.get_logger(__name__)
HEADER_LIMITS = {"max_line_size": 64 * 1024, "max_field_size": 64 * 1024}


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The engine's event loop: uvloop (libuv) - see docs/benchmarks.md for what it buys."""
    return uvloop.new_event_loop()


def routing_policy(settings: Settings) -> RoutingPolicy:
    calls = settings.calls
    return RoutingPolicy(
        endpoints=EndpointNames(external=calls.external_endpoint, pstn=calls.pstn_endpoint),
        voicemail_max_seconds=calls.voicemail_max_seconds,
        voicemail_max_silence_seconds=calls.voicemail_max_silence_seconds,
    )


def call_router(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> CallRouter:
    """Inbound calls by the DID's state, outbound calls by the SIP account's."""
    policy = routing_policy(settings)
    return DirectionRouter(
        inbound=InboundRouter(
            directory=SqlNumberDirectory(
                sessions=sessions, media=settings.media, policy=destination_policy(settings)
            ),
            policy=policy,
        ),
        outbound=OutboundRouter(
            accounts=SqlSipAccountDirectory(sessions=sessions),
            policy=OutboundPolicy(
                endpoints=policy.endpoints,
                ring_timeout_s=settings.calls.outbound_ring_timeout_s,
            ),
        ),
    )


async def _database(app: web.Application) -> AsyncIterator[None]:
    engine = create_engine(app[SETTINGS].database)
    app[DB_ENGINE] = engine
    app[SESSIONS] = session_factory(engine)
    yield
    await engine.dispose()


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=200, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector) as session:
        app[HTTP_CLIENT] = session
        yield


async def _call_engine(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    ari_settings = settings.ari
    base_url = str(ari_settings.url).rstrip("/")
    password = ari_settings.password.get_secret_value()
    client = AriClient(
        app[HTTP_CLIENT], base_url, ari_settings.username, password, ari_settings.app
    )
    sessions = app[SESSIONS]
    metrics = app[CALL_METRICS]
    router = TimedRouter(call_router(settings, sessions), metrics=metrics)
    ledger = CountingLedger(SqlCallLedger(sessions=sessions), metrics=metrics)
    voicemail = MailingVoicemailBox(
        sessions=sessions, media_root=settings.media.root, mailer=SmtpMailer(settings.smtp)
    )
    calls, jobs = TaskSupervisor("calls"), TaskSupervisor("jobs")

    def new_runner(start: ari_events.StasisStart, index: dict[str, CallRunner]) -> CallRunner:
        return CallRunner(
            start=start,
            ari_client=client,
            router=router,
            ledger=ledger,
            voicemail=voicemail,
            jobs=jobs,
            index=index,
        )

    dispatcher = Dispatcher(ari_client=client, ledger=ledger, new_runner=new_runner, calls=calls)

    async def on_connected() -> None:
        await client.set_event_filter(allowed=list(WANTED_EVENTS), disallowed=None)
        await dispatcher.resync()

    def on_event(event: AriEvent) -> None:
        dispatcher.on_event(event)

    stream = AriEventStream(
        app[HTTP_CLIENT],
        base_url,
        ari_settings.username,
        password,
        ari_settings.app,
        on_event=on_event,
        on_connected=on_connected,
        max_backoff_s=ari_settings.reconnect_max_backoff_s,
    )
    engine = CallEngine(dispatcher=dispatcher, stream=stream, calls=calls, jobs=jobs)
    app[ENGINE] = engine
    stream_task = jobs.spawn(stream.run(), name="ari-events")
    yield
    stream_task.cancel()
    await calls.drain(seconds=2.0)
    await calls.close()
    await jobs.drain(seconds=5.0)
    await jobs.close()


async def _billing(app: web.Application) -> AsyncIterator[None]:
    """The daily billing run and the minute-by-minute expiry of tests and reservations."""
    settings = app[SETTINGS]
    scheduler = BillingScheduler(
        sessions=app[SESSIONS], settings=settings.billing, mailer=SmtpMailer(settings.smtp)
    )
    async with scheduler.running():
        yield


def privacy_purge_scheduler(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], *, clock: Clock = utc_now
) -> PrivacyPurgeScheduler:
    """Purges caller numbers and recordings past the retention, every ``purge_interval_s``."""
    media_root = settings.media.root

    async def purge(now: datetime, retention_days: int) -> PurgeResult:
        return await purge_expired(
            sessions, now, retention_days, media_root=media_root,
            documents_root=settings.documents.root,
        )  # fmt: skip

    return PrivacyPurgeScheduler(purge=purge, settings=settings.privacy, clock=clock)


async def _privacy_purge(app: web.Application) -> AsyncIterator[None]:
    async with privacy_purge_scheduler(app[SETTINGS], app[SESSIONS]).running():
        yield


def build_app(settings: Settings, *, call_engine: bool = True) -> web.Application:
    """The whole service; ``call_engine=False`` serves the HTTP API alone (tests, tools)."""
    # Header limits above aiohttp's 8 KiB: an oversized Authorization header then
    # reaches the API (a JSON 401 that echoes nothing) instead of aiohttp's plain
    # 400, which quotes the start of the offending line - the token.
    app = web.Application(handler_args=dict(HEADER_LIMITS))
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_database)
    if call_engine:
        app[CALL_METRICS] = CallMetrics()
        app.cleanup_ctx.extend([_http_client, _call_engine, _billing, _privacy_purge])
        add_health_routes(app)
        add_api_routes(app)  # opens the one ProvisioningService from settings.provisioning
    return app
