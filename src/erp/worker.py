"""`erp worker`: the Temporal worker process, wired by the composition root."""

from __future__ import annotations

import asyncio

from core.settings import Settings
from erp.bootstrap import Container
from workflows.worker import serve


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Serve the task queue until `stop` is set (or forever)."""
    container = Container(settings, min_pool=2, max_pool=10)
    async with container.running():
        client = await container.temporal.client()
        await serve(
            client,
            container.temporal.task_queue,
            container.temporal.deployment,
            container.activities(),
            container.onboarding,
            container.databases.names(),
            stop,
        )
