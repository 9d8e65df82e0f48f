"""The worker entry point (`erp worker`): runs workflows and activities, and starts the projectors."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from temporalio.worker import Worker

from erp.redis_client import redis_client
from erp.settings import Settings
from erp.temporal import connect_temporal
from queries.notifications import Notifier
from tenancy.routing import Databases
from workflows.activities import ErpActivities
from workflows.starters import start_projectors
from workflows.workflows import WORKFLOWS

log = logging.getLogger(__name__)


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Serve the task queue until `stop` is set (or forever)."""
    databases = await Databases.open(settings, min_size=2, max_size=10)
    client_redis = redis_client(settings.redis_url)
    activities = ErpActivities(databases, Notifier(client_redis), settings)
    client = await connect_temporal(settings)
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
            log.info("worker serving task queue %s", settings.task_queue)
            await (stop.wait() if stop is not None else asyncio.Future())
    finally:
        await client_redis.aclose()
        await databases.close()
