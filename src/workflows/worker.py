"""The worker entry point (`erp worker`): runs workflows and activities, and starts the projectors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.client import Client
from temporalio.worker import Worker

from erp.redis_client import redis_client
from erp.settings import Settings
from erp.temporal import connect_temporal
from queries.notifications import Notifier
from tenancy.accounts import AccountCatalog
from tenancy.routing import Databases
from workflows.activities import ErpActivities
from workflows.starters import resume_onboarding, start_projectors
from workflows.workflows import WORKFLOWS

log = logging.getLogger(__name__)

SWEEP_EVERY = 30.0
"""Seconds between looks for accounts whose onboarding never started or did not finish."""


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Serve the task queue until `stop` is set (or forever)."""
    databases = await Databases.open(settings, min_size=2, max_size=10)
    client_redis = redis_client(settings.redis_url)
    activities = ErpActivities(databases, Notifier(client_redis), settings)
    client = await connect_temporal(settings)
    engine = create_async_engine(settings.sqlalchemy_url, pool_size=1, max_overflow=1)
    catalog = AccountCatalog(engine)
    try:
        worker = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=WORKFLOWS,
            activities=activities.all(),
            max_concurrent_activities=100,
            graceful_shutdown_timeout=timedelta(seconds=5),
        )
        async with worker:
            await start_projectors(client, settings.task_queue, databases.names())
            sweeping = asyncio.create_task(sweep_onboarding(client, settings.task_queue, catalog))
            log.info("worker serving task queue %s", settings.task_queue)
            try:
                await (stop.wait() if stop is not None else asyncio.Future())
            finally:
                sweeping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeping
    finally:
        await client_redis.aclose()
        await databases.close()
        await engine.dispose()


async def sweep_onboarding(
    client: Client, task_queue: str, catalog: AccountCatalog, every: float = SWEEP_EVERY
) -> None:
    """Now and then, (re)start onboarding for accounts left in Onboarding, e.g. when Temporal was
    unreachable right after POST /accounts registered them. Never raises; it tries again next round."""
    while True:
        try:
            if waiting := await resume_onboarding(client, task_queue, catalog):
                log.info("onboarding of %d account(s) started again or still running", waiting)
        except Exception:
            log.warning("could not resume onboarding; trying again in %.0f s", every, exc_info=True)
        await asyncio.sleep(every)
