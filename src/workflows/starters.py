"""Client-side helpers that start the workflows (used by the API, the CLI and the worker)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from queries.registry import PROJECTIONS
from tenancy.accounts import Account, AccountCatalog, AccountStatus
from tenancy.routing import place_account
from workflows.messages import (
    AccountInput,
    OnboardResult,
    ProjectorInput,
    RebuildInput,
    RebuildProgress,
    RebuildResult,
)
from workflows.workflows import OnboardAccountWorkflow, ProjectorWorkflow, RebuildProjectionWorkflow

log = logging.getLogger(__name__)

ONBOARD_WAIT = timedelta(seconds=15)
"""How long POST /accounts waits for onboarding before answering with Status Onboarding."""


def projector_workflow_id(projection: str, database: str) -> str:
    return f"projector-{projection}-{database}"


async def start_projectors(client: Client, task_queue: str, databases: list[str]) -> None:
    """Start each projection's pipeline in each tenant database unless it already runs."""
    for database in databases:
        for name in PROJECTIONS:
            await client.start_workflow(
                ProjectorWorkflow.run,
                ProjectorInput(name, database),
                id=projector_workflow_id(name, database),
                task_queue=task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            )


async def open_account(
    catalog: AccountCatalog,
    main: asyncpg.Pool[Any],
    databases: list[str],
    client: Client,
    task_queue: str,
    name: str,
    wait: timedelta = ONBOARD_WAIT,
) -> tuple[Account, str, str]:
    """Register an account in the least-used database and onboard it: (account, API key, status).

    The status is Active when onboarding finished within `wait`, else Onboarding: the workflow goes on
    (with no deadline of its own), and the worker's sweep starts it again if it never began.
    """
    database = await place_account(main, databases)
    account, api_key = await catalog.register(name, database)
    status = await onboard_account(client, task_queue, account, wait)
    return account, api_key, status


async def onboard_account(
    client: Client, task_queue: str, account: Account, wait: timedelta = ONBOARD_WAIT
) -> str:
    """Start (or join) the account's onboarding workflow and wait up to `wait` for its status."""
    try:
        handle = await _start_onboarding(client, task_queue, account)
        result = await asyncio.wait_for(handle.result(), wait.total_seconds())
    except (RPCError, TimeoutError, WorkflowFailureError):
        log.warning("account %s is still onboarding", account.account_id, exc_info=True)
        return AccountStatus.ONBOARDING
    return result.status


async def resume_onboarding(client: Client, task_queue: str, catalog: AccountCatalog) -> int:
    """Start onboarding again for every account left in Onboarding (a workflow that never started,
    or one that failed); accounts whose workflow still runs just join it. Returns how many."""
    waiting = await catalog.onboarding()
    for account in waiting:
        await _start_onboarding(client, task_queue, account)
    return len(waiting)


async def _start_onboarding(
    client: Client, task_queue: str, account: Account
) -> WorkflowHandle[OnboardAccountWorkflow, OnboardResult]:
    """The account's one onboarding workflow: started, or joined while it runs."""
    return await client.start_workflow(
        OnboardAccountWorkflow.run,
        AccountInput(str(account.account_id), account.database),
        id=f"onboard-{account.account_id}",
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


async def start_rebuild(
    client: Client, task_queue: str, projection: str, databases: list[str], account_id: UUID | None
) -> WorkflowHandle[RebuildProjectionWorkflow, RebuildResult]:
    """Rebuild one account's read model (pass its database) or every account's in `databases`."""
    scope = str(account_id) if account_id else "all"
    return await client.start_workflow(
        RebuildProjectionWorkflow.run,
        RebuildInput(projection, databases, str(account_id) if account_id else None),
        id=f"rebuild-{projection}-{scope}-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )


async def rebuild_progress(
    client: Client, handle: WorkflowHandle[RebuildProjectionWorkflow, RebuildResult]
) -> RebuildProgress | None:
    """The running rebuild activity's last heartbeat (None before the first)."""
    description = await handle.describe()
    for pending in description.raw_description.pending_activities:
        if pending.heartbeat_details.payloads:
            values = await client.data_converter.decode(pending.heartbeat_details.payloads)
            return RebuildProgress(**values[0])
    return None
