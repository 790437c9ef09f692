"""The composition root: every component is built and wired here, once.

Each resource is an aiohttp ``cleanup_ctx`` (opened in order, closed in
reverse): the database engine, the local spool (and its replayers), the HTTP
client session to Asterisk, the call engine (dispatcher + ARI event stream).
Components get their collaborators as keyword arguments; nothing is a
module-level singleton.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime

import aiohttp
import structlog
import uvloop
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.agi.astdb import CONTEXT as ASTDB_CONTEXT
from callcontrol.agi.astdb import SCRIPT as ASTDB_SCRIPT
from callcontrol.agi.astdb import AgiAstDbWriter
from callcontrol.agi.executor import AgiExecutor, MediaFolders
from callcontrol.agi.plan_push import PlanPublisher, PlanTiming
from callcontrol.agi.reports import HangupReports
from callcontrol.agi.server import AgiServer
from callcontrol.ari import events as ari_events
from callcontrol.ari.client import AriClient
from callcontrol.ari.errors import AriError
from callcontrol.ari.stream import AriEventStream
from callcontrol.db.engine import create_engine, session_factory
from callcontrol.domain.call_events import ObservedCall
from callcontrol.domain.outbound import OutboundPolicy
from callcontrol.domain.routing import EndpointNames, RoutingPolicy
from callcontrol.domain.shedding import IntakeLag, ShedController, ShedPolicy
from callcontrol.engine.admission import (
    STALL_IGNORE_S,
    Admission,
    AdmissionLimits,
    DialplanShedding,
    SheddingRouter,
)
from callcontrol.engine.call_runner import CallRunner
from callcontrol.engine.dispatcher import Dispatcher
from callcontrol.engine.lease import AppLease
from callcontrol.engine.outbox import CallOutbox
from callcontrol.engine.ports import AriPort, CallLedger, NumberDirectory, VoicemailBox
from callcontrol.engine.routers import CallRouter, DirectionRouter, InboundRouter, OutboundRouter
from callcontrol.engine.supervisor import TaskSupervisor
from callcontrol.engine.translate import WANTED_EVENTS
from callcontrol.keys import (
    DB_ENGINE,
    ENGINE,
    HTTP_CLIENT,
    INTAKE_LAG,
    MAILER,
    PLAN_PUBLISHER,
    SESSIONS,
    SETTINGS,
    SPOOL,
    SPOOLED,
    CallEngine,
)
from callcontrol.metrics import CALL_METRICS, CallMetrics, CountingLedger, TimedRouter
from callcontrol.notify.mailer import Mailer, SmtpMailer
from callcontrol.notify.reminder_calls import AriReminderCaller
from callcontrol.notify.retrying_mailer import SpoolingMailer, replay_mails
from callcontrol.notify.voicemail import MailingVoicemailBox
from callcontrol.repositories.breaker import (
    GuardedNumberDirectory,
    GuardedSipAccountDirectory,
    LookupGuard,
)
from callcontrol.repositories.call_journal import CallJournal
from callcontrol.repositories.cdrs import SqlCallLedger
from callcontrol.repositories.numbers import SqlNumberDirectory
from callcontrol.repositories.personal_data import PurgeResult, purge_expired
from callcontrol.repositories.routing_cache import FallbackNumberDirectory
from callcontrol.repositories.routing_changes import RoutingChangeFeed
from callcontrol.repositories.sip_accounts import SqlSipAccountDirectory
from callcontrol.repositories.spool import (
    DATABASE_QUEUE,
    MAIL_QUEUE,
    Spool,
    SpoolKind,
    spool_target,
)
from callcontrol.repositories.spooling import (
    Replay,
    SpooledPorts,
    SpoolingLedger,
    SpoolingVoicemailBox,
    SpoolReplayer,
    recover_journal,
    replay_calls,
    replay_voicemails,
)
from callcontrol.services.cluster_lock import ClusterJobLock
from callcontrol.services.destinations import destination_policy
from callcontrol.services.numbers import Clock, NumberService, utc_now
from callcontrol.services.periodic import owned_task
from callcontrol.services.phone_reminders import (
    PhoneReminderQueue,
    PhoneReminderWorker,
    run_every,
)
from callcontrol.services.privacy_purge import PrivacyPurgeScheduler
from callcontrol.services.scheduler import BillingScheduler
from callcontrol.settings import Settings
from callcontrol.web.api import add_api_routes
from callcontrol.web.api.config import DESTINATION_POLICY, NUMBER_SERVICE, PROVISIONER
from callcontrol.web.health import add_health_routes
from provisioning.reloaders import open_reloader
from provisioning.service import open_provisioning

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
        max_hops=calls.max_forwarding_hops,
    )


def _lookup_guard(settings: Settings) -> LookupGuard:
    return LookupGuard(
        timeout_s=settings.calls.lookup_timeout_ms / 1000,
        open_s=settings.calls.lookup_retry_after_ms / 1000,
    )


def inbound_router(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], guard: LookupGuard
) -> InboundRouter:
    """Inbound calls by the DID's state."""
    directory: NumberDirectory = GuardedNumberDirectory(
        SqlNumberDirectory(
            sessions=sessions, media=settings.media, policy=destination_policy(settings)
        ),
        guard,
    )
    if settings.calls.routing_cache_s > 0:
        directory = FallbackNumberDirectory(directory, max_age_s=settings.calls.routing_cache_s)
    return InboundRouter(directory=directory, policy=routing_policy(settings))


def call_router(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> DirectionRouter:
    """Inbound calls by the DID's state, outbound calls by the SIP account's."""
    policy = routing_policy(settings)
    guard = _lookup_guard(settings)
    return DirectionRouter(
        inbound=inbound_router(settings, sessions, guard),
        outbound=OutboundRouter(
            accounts=GuardedSipAccountDirectory(SqlSipAccountDirectory(sessions=sessions), guard),
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


async def _spool(app: web.Application) -> AsyncIterator[None]:
    """The spool in front of the CDR ledger, the voicemail box and the mailer, and
    its two replayers (database queue, mail queue), owned by one supervisor."""
    settings, spool, mailer = app[SETTINGS], app[SPOOL], app[MAILER]
    part = settings.spool
    await spool.open()
    journal = CallJournal.beside(settings.spool.path)
    await recover_journal(journal, spool)  # a killed engine's last calls, replayed idempotently
    sessions = app[SESSIONS]
    sql_ledger = SqlCallLedger(sessions=sessions)
    box = MailingVoicemailBox(sessions=sessions, media_root=settings.media.root, mailer=mailer)
    database_replays: dict[SpoolKind, Replay] = {
        SpoolKind.CDR: replay_calls(sql_ledger),
        SpoolKind.VOICEMAIL: replay_voicemails(box),
    }
    mail_replay = replay_mails(mailer.inner)
    tasks, writes = TaskSupervisor("spool"), TaskSupervisor("spool-writes")
    replayers = [
        SpoolReplayer(
            spool=spool, kinds=DATABASE_QUEUE, replay=database_replays.__getitem__,
            retry_min_s=part.retry_min_s, retry_max_s=part.retry_max_s,
            max_rejections=part.max_rejections, name="database",
        ),
        SpoolReplayer(
            spool=spool, kinds=MAIL_QUEUE, replay=lambda _kind: mail_replay,
            retry_min_s=part.mail_retry_min_s, retry_max_s=part.mail_retry_max_s,
            max_rejections=part.max_rejections, remember_done=True, name="mail",
        ),
    ]  # fmt: skip
    app[SPOOLED] = SpooledPorts(
        spool=spool,
        ledger=SpoolingLedger(
            sql_ledger, spool=spool, writes=writes, timeout_s=part.db_timeout_s, journal=journal
        ),
        voicemail=SpoolingVoicemailBox(box, spool=spool),
    )
    for replayer in replayers:
        tasks.spawn(replayer.run(), name=f"spool-replay-{replayer.name}")
    if spool.depth.total:
        log.warning("spool_not_empty_at_start", path=str(spool.path), entries=spool.depth.total)
    yield
    await tasks.close()
    await writes.drain(seconds=5.0)  # CDR writes that outlived their call's wait
    await writes.close()
    journal.close()
    await spool.close()


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
    admission = Admission(limits, active_calls=lambda: dispatcher.active_calls, ari=client)
    shedding = SheddingRouter(inner=call_router(settings, sessions), admission=admission)
    stasis_lag = app[INTAKE_LAG]
    max_lag_s = settings.calls.max_stasis_lag_ms / 1000
    dialplan_shedding = DialplanShedding(
        client,
        ari_settings.app,
        controller=ShedController(ShedPolicy(max_call_rate=settings.calls.max_call_rate)),
        congested=lambda: stasis_lag.lag_s > max_lag_s or admission.refusal() is not None,
        on_stall=lambda: stasis_lag.ignore_for(STALL_IGNORE_S),
    )
    router = TimedRouter(shedding, metrics=metrics)
    spooled = app[SPOOLED]
    ledger = CountingLedger(spooled.ledger, metrics=metrics)
    voicemail = spooled.voicemail
    dispatcher = call_dispatcher(
        ari_client=client, router=router, ledger=ledger, voicemail=voicemail, calls=calls, jobs=jobs
    )
    dispatcher.stasis_lag = stasis_lag
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
        dispatcher=dispatcher,
        stream=stream,
        calls=calls,
        jobs=jobs,
        lease=lease,
        router=shedding,
        dialplan_shedding=dialplan_shedding,
    )
    app[ENGINE] = engine
    background = [
        jobs.spawn(stream.run(), name="ari-events"),
        jobs.spawn(lease.keep(stream, on_lost=dispatcher.release_all), name="ari-lease"),
        jobs.spawn(
            dispatcher.watch(
                ari_settings.watchdog_s, serving=lambda: stream.connected and lease.held
            ),
            name="call-watchdog",
        ),
        jobs.spawn(
            dialplan_shedding.run(serving=lambda: stream.connected and lease.held),
            name="dialplan-shedding",
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


async def _agi_server(app: web.Application) -> AsyncIterator[None]:
    """The FastAGI executor (``calls.executor = "agi"``), beside the ARI engine:
    the same router decides, the dialplan carries the plan out, CDRs and
    voicemail go through the same spooled ports."""
    settings, spooled, part = app[SETTINGS], app[SPOOLED], app[SETTINGS].agi
    jobs = TaskSupervisor("agi-jobs")
    reports = HangupReports(part.cdr_folder, keep_s=part.cdr_keep_s)
    publisher: PlanPublisher | None = None
    astdb: AgiAstDbWriter | None = None
    if part.push_plans:
        astdb = AgiAstDbWriter(_ari_client(app), context=ASTDB_CONTEXT)
        publisher = app[PLAN_PUBLISHER] = _plan_publisher(app, astdb)
    executor = AgiExecutor(
        router=call_router(settings, app[SESSIONS]),
        pushed=publisher,
        # The report files are the journal: a batch is committed once its CDRs are stored
        # or spooled, so the ledger's own write-ahead journal would be a second copy.
        ledger=CountingLedger(spooled.ledger.without_journal(), metrics=app[CALL_METRICS]),
        voicemail=spooled.voicemail,
        media=_media_folders(settings),
        intake_lag=app[INTAKE_LAG],
    )  # fmt: skip
    executor.prepare()
    handlers = executor.handlers()
    if astdb is not None:
        handlers[ASTDB_SCRIPT] = astdb.serve
    server = AgiServer(
        handlers, host=part.host, port=part.port,
        header_timeout_s=part.header_timeout_s, command_timeout_s=part.command_timeout_s,
    )  # fmt: skip
    await server.start()
    jobs.spawn(executor.read_reports(reports, part.cdr_read_every_s), name="agi-hangup-reports")
    if publisher is not None:
        engine = app[ENGINE]
        jobs.spawn(
            publisher.run(serving=lambda: engine.stream.connected and engine.lease.held),
            name="agi-plan-push",
        )
    yield
    if publisher is not None:
        try:
            await publisher.withdraw()
        except AriError as exc:
            log.warning("plans_withdraw_failed", error=str(exc))
    await server.close()
    await jobs.close()  # the reader stops: a batch not committed is read by the next engine


def _media_folders(settings: Settings) -> MediaFolders:
    return MediaFolders(settings.media.root, settings.media.asterisk_path(""))


def _ari_client(app: web.Application) -> AriClient:
    ari = app[SETTINGS].ari
    return AriClient(
        app[HTTP_CLIENT], str(ari.url).rstrip("/"), ari.username,
        ari.password.get_secret_value(), ari.app,
    )  # fmt: skip


def _plan_publisher(app: web.Application, astdb: AgiAstDbWriter) -> PlanPublisher:
    """Each DID's standing plan kept in Asterisk for the FastAGI dialplan, followed
    from the database's change log; vouched for over ARI, written over FastAGI."""
    settings, part = app[SETTINGS], app[SETTINGS].agi
    return PlanPublisher(
        plans=inbound_router(settings, app[SESSIONS], _lookup_guard(settings)),
        changes=RoutingChangeFeed(app[DB_ENGINE]),
        asterisk=_ari_client(app),
        astdb=astdb,
        app=settings.ari.app,
        max_hops=settings.calls.max_forwarding_hops,
        voicemail_folder=_media_folders(settings).asterisk_file(""),  # the dialplan adds the name
        timing=PlanTiming(poll_s=part.plans_poll_s, lease_s=part.plans_lease_s),
    )


async def _frozen_heap(app: web.Application) -> AsyncIterator[None]:
    """What exists once the engine is up (modules, settings, pools, compiled
    statements) is moved out of the garbage collector's sight (``gc.freeze``).
    A full collection otherwise walks all of it: 119 ms measured on the FastAGI
    path at 200 calls/s, a stall of every call in progress (docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


async def _billing(app: web.Application) -> AsyncIterator[None]:
    """The daily billing run and the minute-by-minute expiry of tests and reservations;
    with phone reminders on, its reminders are also queued for a call."""
    settings = app[SETTINGS]
    sessions = app[SESSIONS]
    phone = PhoneReminderQueue(sessions=sessions) if settings.phone_reminders.enabled else None
    scheduler = BillingScheduler(
        sessions=sessions,
        settings=settings.billing,
        mailer=app[MAILER],
        phone=phone,
    )
    async with scheduler.running():
        yield


@dataclass(frozen=True, slots=True)
class ReminderRuntime:
    worker: PhoneReminderWorker
    connected: asyncio.Event  # set once the reminder app's WebSocket is up (lease held)
    lease: AppLease
    serving: Callable[[], bool]
    """Connected and holding the lease: only then may reminders be called."""


@asynccontextmanager
async def reminder_worker(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], http: aiohttp.ClientSession
) -> AsyncIterator[ReminderRuntime]:
    """The phone-reminder caller on its own ARI application (``<app><app_suffix>``) and
    events WebSocket (reconnecting like the engine's); originate only once connected.
    The app is fenced by its own ``AppLease``, as the engine's: of two engines (or an
    engine and ``callcontrol reminders call``) on one Asterisk, one connects and
    calls, the other stands by - instead of taking the app from each other and
    losing the events of their calls."""
    part, ari = settings.phone_reminders, settings.ari
    app_name = ari.app + part.app_suffix
    base_url, password = str(ari.url).rstrip("/"), ari.password.get_secret_value()
    client = AriClient(http, base_url, ari.username, password, app_name)
    caller = AriReminderCaller(
        ari=client, pstn_endpoint=settings.calls.pstn_endpoint, caller_id=part.caller_id,
        ring_timeout_s=part.ring_timeout_s, max_call_s=part.max_call_s,
    )  # fmt: skip
    lease = AppLease(
        client, app_name, ttl_s=ari.lease_ttl_s, replaced_holdoff_s=ari.replaced_holdoff_s
    )
    connected = asyncio.Event()

    async def on_connected() -> None:
        connected.set()

    def on_replaced() -> None:
        connected.clear()
        lease.replaced()

    stream = AriEventStream(
        http, base_url, ari.username, password, app_name, on_event=caller.on_event,
        on_connected=on_connected, max_backoff_s=ari.reconnect_max_backoff_s,
        before_connect=lease.hold, on_replaced=on_replaced,
    )  # fmt: skip

    tasks = [
        asyncio.create_task(stream.run(), name="reminder-ari-events"),
        asyncio.create_task(
            lease.keep(stream, on_lost=connected.clear, log_as="reminder"),
            name="reminder-ari-lease",
        ),
    ]
    worker = PhoneReminderWorker(
        sessions=sessions, caller=caller, settings=part,
        prompt_root=settings.media.asterisk_root or settings.media.root,
    )  # fmt: skip
    try:
        yield ReminderRuntime(
            worker, connected, lease, serving=lambda: stream.connected and lease.held
        )
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task
        try:
            await lease.release()
        except AriError as exc:
            log.warning("reminder_lease_release_failed", error=str(exc))
        await client.close()


async def _phone_reminders(app: web.Application) -> AsyncIterator[None]:
    """Calls the queued reminders every ``interval_s`` (only with phone reminders on),
    in the rounds where this engine holds the reminder app's lease."""
    settings = app[SETTINGS]
    if not settings.phone_reminders.enabled:
        yield
        return
    async with reminder_worker(settings, app[SESSIONS], app[HTTP_CLIENT]) as runtime:

        async def calls() -> None:
            await runtime.connected.wait()  # Asterisk may come up after the engine
            await run_every(
                runtime.worker, settings.phone_reminders.interval_s, ready=runtime.serving
            )

        async with owned_task(calls, name="phone-reminders"):
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


async def _provisioning(app: web.Application) -> AsyncIterator[None]:
    """The one SIP account provisioner (``Settings.provisioning``), pjsip reloaded over
    ARI or AMI (``provisioning.reload_via``); its pending reload is flushed at shutdown."""
    settings = app[SETTINGS]
    async with open_reloader(settings) as reloader:
        part = settings.provisioning
        async with open_provisioning(part, app[SESSIONS], reloader=reloader) as service:
            app[PROVISIONER] = service
            yield


def _number_service(mailer: Mailer) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[NUMBER_SERVICE] = NumberService(sessions=app[SESSIONS], mailer=mailer)
        yield

    return ctx


def _wire_api(app: web.Application, mailer: Mailer) -> None:
    """The API and the services it is handed (it builds none itself)."""
    app[DESTINATION_POLICY] = destination_policy(app[SETTINGS])
    app.cleanup_ctx.extend([_provisioning, _number_service(mailer)])
    add_api_routes(app)


async def _privacy_purge(app: web.Application) -> AsyncIterator[None]:
    async with privacy_purge_scheduler(app[SETTINGS], app[SESSIONS]).running():
        yield


@asynccontextmanager
async def _once_per_cluster_jobs(app: web.Application) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for job in (_billing, _phone_reminders, _privacy_purge):
            await stack.enter_async_context(asynccontextmanager(job)(app))
        yield


async def _cluster_jobs(app: web.Application) -> AsyncIterator[None]:
    """The billing run, reminders and the privacy purge: on PostgreSQL only in the
    engine holding the cluster's advisory lock (services/cluster_lock.py)."""
    if not app[SETTINGS].database.url.startswith("postgresql"):
        async with _once_per_cluster_jobs(app):
            yield
        return
    lock = ClusterJobLock(engine=app[DB_ENGINE], jobs=lambda: _once_per_cluster_jobs(app))
    async with lock.running():
        yield


def build_app(
    settings: Settings, *, call_engine: bool = True, mailer: Mailer | None = None
) -> web.Application:
    """The whole service. ``call_engine=False`` gives the database and the API alone
    (no health routes, spool, call engine or scheduled jobs): the API component
    tests, which pass a recording ``mailer``. Otherwise SMTP (``mailer`` if given)
    behind the spool is the one mailer of every mail."""
    # Header limits above aiohttp's 8 KiB: an oversized Authorization header then
    # reaches the API (a JSON 401 that echoes nothing) instead of aiohttp's plain
    # 400, which quotes the start of the offending line - the token.
    app = web.Application(handler_args=dict(HEADER_LIMITS))
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_database)
    mailer = mailer or SmtpMailer(settings.smtp)  # built once
    if call_engine:
        app[CALL_METRICS] = CallMetrics()
        app[INTAKE_LAG] = IntakeLag(clock=time.time)
        # One mailer for every mail of the service: what the server refuses is spooled.
        spool = app[SPOOL] = Spool(settings.spool.path, target=spool_target(settings.database.url))
        mailer = app[MAILER] = SpoolingMailer(mailer, spool=spool)
        app.cleanup_ctx.extend([_spool, _http_client, _call_engine, _cluster_jobs])
        if settings.calls.executor == "agi":
            app.cleanup_ctx.append(_agi_server)
        app.cleanup_ctx.append(_frozen_heap)  # last: everything long-lived exists by then
        add_health_routes(app)
    _wire_api(app, mailer)
    return app
