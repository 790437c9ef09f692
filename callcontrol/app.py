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
from callcontrol.ari.errors import AriError
from callcontrol.ari.stream import AriEventStream
from callcontrol.db.engine import create_engine, session_factory
from callcontrol.domain.call_events import ObservedCall
from callcontrol.domain.outbound import OutboundPolicy
from callcontrol.domain.routing import EndpointNames, RoutingPolicy
from callcontrol.engine.admission import Admission, AdmissionLimits, SheddingRouter
from callcontrol.engine.call_runner import CallRunner
from callcontrol.engine.dispatcher import Dispatcher
from callcontrol.engine.lease import AppLease
from callcontrol.engine.outbox import CallOutbox
from callcontrol.engine.ports import AriPort, CallLedger, VoicemailBox
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
from callcontrol.services.numbers import Clock, utc_now
from callcontrol.services.privacy_purge import PrivacyPurgeScheduler
from callcontrol.services.scheduler import BillingScheduler
from callcontrol.settings import Settings
from callcontrol.web.api import add_api_routes
from callcontrol.web.health import add_health_routes

log = structlog.get_logger(__name__)


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


def call_router(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> DirectionRouter:
    """Inbound calls by the DID's state, outbound calls by the SIP account's."""
    policy = routing_policy(settings)
    return DirectionRouter(
        inbound=InboundRouter(
            directory=SqlNumberDirectory(sessions=sessions, media=settings.media), policy=policy
        ),
        outbound=OutboundRouter(
            accounts=SqlSipAccountDirectory(sessions=sessions),
            policy=OutboundPolicy(
                endpoints=policy.endpoints,
                ring_timeout_s=settings.calls.outbound_ring_timeout_s,
            ),
        ),
    )


def call_dispatcher(
    *,
    ari_client: AriPort,
    router: CallRouter,
    ledger: CallLedger,
    voicemail: VoicemailBox,
    calls: TaskSupervisor,
    jobs: TaskSupervisor,
    settle_s: float = 0.5,
) -> Dispatcher:
    """The call engine proper: a runner per call, wired to the outbox that stores it.

    The one place it is assembled; the benchmarks and component tests build it
    here too, around their fakes."""
    outbox = CallOutbox(ari=ari_client, ledger=ledger, voicemail=voicemail, jobs=jobs)

    def new_runner(
        start: ari_events.StasisStart,
        index: dict[str, CallRunner],
        *,
        adopt: ObservedCall | None = None,
        call_id: str | None = None,
    ) -> CallRunner:
        return CallRunner(
            start=start,
            ari_client=ari_client,
            router=router,
            outbox=outbox,
            index=index,
            adopt=adopt,
            call_id=call_id,
        )

    return Dispatcher(ari_client=ari_client, new_runner=new_runner, calls=calls, settle_s=settle_s)


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
    calls, jobs = TaskSupervisor("calls"), TaskSupervisor("jobs")
    limits = AdmissionLimits(
        max_calls=settings.calls.max_active_calls,
        max_ari_in_flight=settings.calls.max_ari_in_flight,
        max_ari_latency_s=settings.calls.max_ari_latency_ms / 1000,
    )
    shedding = SheddingRouter(
        inner=call_router(settings, sessions),
        admission=Admission(limits, active_calls=lambda: len(calls), ari=client),
    )
    router = TimedRouter(shedding, metrics=metrics)
    ledger = CountingLedger(SqlCallLedger(sessions=sessions), metrics=metrics)
    voicemail = MailingVoicemailBox(
        sessions=sessions, media_root=settings.media.root, mailer=SmtpMailer(settings.smtp)
    )
    dispatcher = call_dispatcher(
        ari_client=client, router=router, ledger=ledger, voicemail=voicemail, calls=calls, jobs=jobs
    )
    lease = AppLease(
        client,
        ari_settings.app,
        ttl_s=ari_settings.lease_ttl_s,
        replaced_holdoff_s=ari_settings.replaced_holdoff_s,
    )
    stream: AriEventStream

    async def set_event_filter() -> None:
        try:
            await client.set_event_filter(allowed=list(WANTED_EVENTS), disallowed=None)
        except AriError as exc:
            log.warning("ari_event_filter_failed", error=str(exc))

    async def on_connected() -> None:
        # Returns at once: events flow while the filter is set and calls reconciled.
        jobs.spawn(set_event_filter(), name="event-filter")
        dispatcher.connected()

    def on_replaced() -> None:
        lease.replaced()
        dispatcher.release_all()

    async def keep_lease() -> None:
        while True:
            await asyncio.sleep(lease.renew_every_s)
            if not stream.connected:
                continue
            try:
                still_ours = await lease.renew()
            except AriError as exc:
                log.warning("ari_lease_renew_failed", error=str(exc))
                continue
            if not still_ours:
                log.error("ari_lease_lost", other=lease.other)
                dispatcher.release_all()
                await stream.disconnect()

    stream = AriEventStream(
        app[HTTP_CLIENT],
        base_url,
        ari_settings.username,
        password,
        ari_settings.app,
        on_event=dispatcher.on_event,
        on_connected=on_connected,
        max_backoff_s=ari_settings.reconnect_max_backoff_s,
        before_connect=lease.hold,
        on_replaced=on_replaced,
    )
    engine = CallEngine(
        dispatcher=dispatcher, stream=stream, calls=calls, jobs=jobs, lease=lease, router=shedding
    )
    app[ENGINE] = engine
    background = [
        jobs.spawn(stream.run(), name="ari-events"),
        jobs.spawn(keep_lease(), name="ari-lease"),
        jobs.spawn(
            dispatcher.watch(
                ari_settings.watchdog_s, serving=lambda: stream.connected and lease.held
            ),
            name="call-watchdog",
        ),
    ]
    yield
    for task in background:
        task.cancel()
    # A stop is a restart as far as calls go: leave them talking in Asterisk,
    # untouched; the next engine (or a standby, once the lease is free) adopts them.
    dispatcher.release_all()
    await calls.drain(seconds=2.0)
    await calls.close()
    try:
        await lease.release()
    except AriError as exc:
        log.warning("ari_lease_release_failed", error=str(exc))
    await jobs.drain(seconds=5.0)
    await jobs.close()
    await client.close()


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
        return await purge_expired(sessions, now, retention_days, media_root=media_root)

    return PrivacyPurgeScheduler(purge=purge, settings=settings.privacy, clock=clock)


async def _privacy_purge(app: web.Application) -> AsyncIterator[None]:
    async with privacy_purge_scheduler(app[SETTINGS], app[SESSIONS]).running():
        yield


def build_app(settings: Settings, *, call_engine: bool = True) -> web.Application:
    """The whole service. ``call_engine=False`` gives the database part alone, with no
    route: the caller adds the API with ``add_api_routes`` and its own collaborators
    (the API component tests pass a recording mailer)."""
    app = web.Application()
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_database)
    if call_engine:
        app[CALL_METRICS] = CallMetrics()
        app.cleanup_ctx.extend([_http_client, _call_engine, _billing, _privacy_purge])
        add_health_routes(app)
        add_api_routes(app)  # opens the one ProvisioningService from settings.provisioning
    return app
