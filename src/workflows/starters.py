"""Client-side helpers that start the workflows (used by the API, the CLI and the worker)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from queries.registry import PROJECTIONS
from tenancy.accounts import Account, AccountCatalog
from tenancy.routing import place_account
from workflows.messages import AccountInput, ProjectorInput, RebuildInput, RebuildResult
from workflows.workflows import OnboardAccountWorkflow, ProjectorWorkflow, RebuildProjectionWorkflow

ONBOARD_WAIT = timedelta(seconds=15)


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
) -> tuple[Account, str, str]:
    """Register an account in the least-used database and onboard it: (account, API key, status)."""
    database = await place_account(main, databases)
    account, api_key = await catalog.register(name, database)
    status = await onboard_account(client, task_queue, account)
    return account, api_key, status


async def onboard_account(client: Client, task_queue: str, account: Account) -> str:
    """Run the onboarding workflow to its end (idempotent); returns the account's status."""
    result = await client.execute_workflow(
        OnboardAccountWorkflow.run,
        AccountInput(str(account.account_id), account.database),
        id=f"onboard-{account.account_id}",
        task_queue=task_queue,
        execution_timeout=ONBOARD_WAIT,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return result.status


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
