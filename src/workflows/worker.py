"""The worker: serves the task queue with the workflows and activities, starts the projector
pipelines, and sweeps for onboarding that never started. `erp worker` (`erp.worker`) runs it.

A worker serves one deployment (`core.deployment`): its identity names it, and it refuses to start
on a task queue that another deployment's workers poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from datetime import timedelta

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.worker import Worker

from core.deployment import Deployment, ForeignDeployment
from core.heap import freeze_startup
from tenancy.onboarding import Onboarding
from workflows.activities import ErpActivities
from workflows.starters import start_projectors
from workflows.workflows import WORKFLOWS

log = logging.getLogger(__name__)

SWEEP_EVERY = 30.0
"""Seconds between looks for accounts whose onboarding never started or did not finish."""


IDENTITY_MARK = " deployment "
"""Between a worker's process and its deployment in its Temporal identity: `pid@host deployment erp-…`."""


def worker_identity(deployment: Deployment) -> str:
    return f"{os.getpid()}@{socket.gethostname()}{IDENTITY_MARK}{deployment.name}"


async def foreign_pollers(client: Client, task_queue: str, deployment: Deployment) -> list[str]:
    """The identities of workers of other deployments that Temporal saw polling `task_queue` lately.

    A worker whose identity names no deployment (one older than deployment ids, during an upgrade)
    is not counted: its tasks are refused one by one instead (`ErpActivities`).
    """
    found = set()
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind
            )
        )
        for poller in described.pollers:
            _, mark, theirs = poller.identity.rpartition(IDENTITY_MARK)
            if mark and theirs != deployment.name:
                found.add(poller.identity)
    return sorted(found)


async def serve(
    client: Client,
    task_queue: str,
    deployment: Deployment,
    activities: ErpActivities,
    onboarding: Onboarding,
    databases: list[str],
    stop: asyncio.Event | None = None,
) -> None:
    """Serve `task_queue` for `deployment` until `stop` is set (or forever).

    ForeignDeployment if workers of another deployment poll the queue: sharing it
    would let one deployment's worker run the other's projectors against its own databases.
    """
    if strangers := await foreign_pollers(client, task_queue, deployment):
        raise ForeignDeployment(
            f"task queue {task_queue!r} is served by workers of another deployment "
            f"({', '.join(strangers)}); this worker serves {deployment.name}. Leave ERP_TASK_QUEUE "
            f"unset (each deployment then uses its own, {deployment.name}) or give each its own."
        )
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=activities.all(),
        identity=worker_identity(deployment),
        max_concurrent_activities=100,
        graceful_shutdown_timeout=timedelta(seconds=5),
    )
    async with worker:
        await start_projectors(client, task_queue, deployment, databases)
        sweeping = asyncio.create_task(sweep_onboarding(onboarding))
        freeze_startup()
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
