"""`erp worker`: the Temporal worker process, wired by the composition root."""

from __future__ import annotations

import asyncio
import logging

from core.settings import Settings
from erp.bootstrap import Container
from workflows.worker import serve

log = logging.getLogger(__name__)


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Serve the task queue until `stop` is set (or forever)."""
    container = Container(settings, min_pool=2, max_pool=10)
    async with container.running(), container.forgetting_keys():
        client = await container.temporal.client()
        if built := await container.projections.build_new_shapes():
            log.info("this release gives %s a new shape: a new version of each is being built", built)
        await serve(
            client,
            container.temporal.task_queue,
            container.temporal.deployment,
            container.activities(),
            container.onboarding,
            container.databases.names(),
            stop,
        )
