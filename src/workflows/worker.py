"""The worker: serves the task queue with the workflows and activities, starts the projector
pipelines, and sweeps for onboarding that never started. `erp worker` (`erp.worker`) runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from tenancy.onboarding import Onboarding
from workflows.activities import ErpActivities
from workflows.starters import start_projectors
from workflows.workflows import WORKFLOWS

log = logging.getLogger(__name__)

SWEEP_EVERY = 30.0
"""Seconds between looks for accounts whose onboarding never started or did not finish."""


async def serve(
    client: Client,
    task_queue: str,
    activities: ErpActivities,
    onboarding: Onboarding,
    databases: list[str],
    stop: asyncio.Event | None = None,
) -> None:
    """Serve `task_queue` until `stop` is set (or forever)."""
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=activities.all(),
        max_concurrent_activities=100,
        graceful_shutdown_timeout=timedelta(seconds=5),
    )
    async with worker:
        await start_projectors(client, task_queue, databases)
        sweeping = asyncio.create_task(sweep_onboarding(onboarding))
        log.info("worker serving task queue %s", task_queue)
        try:
            await (stop.wait() if stop is not None else asyncio.Future())
        finally:
            sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeping


async def sweep_onboarding(onboarding: Onboarding, every: float = SWEEP_EVERY) -> None:
    """Now and then, (re)start onboarding for accounts left in Onboarding, e.g. when Temporal was
    unreachable right after POST /accounts registered them. Never raises; it tries again next round."""
    while True:
        try:
            if waiting := await onboarding.resume():
                log.info("onboarding of %d account(s) started again or still running", waiting)
        except Exception:
            log.warning("could not resume onboarding; trying again in %.0f s", every, exc_info=True)
        await asyncio.sleep(every)
