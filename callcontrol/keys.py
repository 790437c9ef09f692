"""The typed keys under which the composition root stores each resource."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from callcontrol.agi.plan_push import PlanPublisher
from callcontrol.ari.stream import AriEventStream
from callcontrol.domain.shedding import IntakeLag
from callcontrol.engine.admission import DialplanShedding, SheddingRouter
from callcontrol.engine.dispatcher import Dispatcher
from callcontrol.engine.lease import AppLease
from callcontrol.engine.supervisor import TaskSupervisor
from callcontrol.notify.retrying_mailer import SpoolingMailer
from callcontrol.repositories.spool import Spool
from callcontrol.repositories.spooling import SpooledPorts
from callcontrol.settings import Settings


@dataclass
class CallEngine:
    dispatcher: Dispatcher
    stream: AriEventStream
    calls: TaskSupervisor
    jobs: TaskSupervisor
    lease: AppLease
    router: SheddingRouter
    dialplan_shedding: DialplanShedding


SETTINGS = web.AppKey("settings", Settings)
DB_ENGINE = web.AppKey("db_engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)
ENGINE = web.AppKey("engine", CallEngine)
PLAN_PUBLISHER = web.AppKey("plan_publisher", PlanPublisher)
"""The FastAGI executor's pushed plans (``calls.executor = agi``, ``agi.push_plans``)."""
SPOOL = web.AppKey("spool", Spool)
SPOOLED = web.AppKey("spooled", SpooledPorts)
MAILER = web.AppKey("mailer", SpoolingMailer)
INTAKE_LAG = web.AppKey("intake_lag", IntakeLag)
"""How late new calls reach the engine, over Stasis or FastAGI: one measure for
both executors, so the dialplan's shedding follows whichever carries the calls."""
