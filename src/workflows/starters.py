"""Client-side helpers that start the workflows (used by the API, the CLI and the worker)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from uuid import UUID

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from queries.registry import PROJECTIONS
from workflows.messages import AccountInput, ProjectorInput, RebuildInput, RebuildResult
from workflows.workflows import OnboardAccountWorkflow, ProjectorWorkflow, RebuildProjectionWorkflow

ONBOARD_WAIT = timedelta(seconds=15)


def projector_workflow_id(projection: str) -> str:
    return f"projector-{projection}"


async def start_projectors(client: Client, task_queue: str) -> None:
    """Start each projection's pipeline unless it already runs (idempotent)."""
    for name in PROJECTIONS:
        await client.start_workflow(
            ProjectorWorkflow.run,
            ProjectorInput(name),
            id=projector_workflow_id(name),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )


async def onboard_account(client: Client, task_queue: str, account_id: UUID) -> str:
    """Run the onboarding workflow to its end; returns the account's status."""
    result = await client.execute_workflow(
        OnboardAccountWorkflow.run,
        AccountInput(str(account_id)),
        id=f"onboard-{account_id}",
        task_queue=task_queue,
        execution_timeout=ONBOARD_WAIT,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return result.status


async def start_rebuild(
    client: Client, task_queue: str, projection: str, account_id: UUID | None
) -> WorkflowHandle[RebuildProjectionWorkflow, RebuildResult]:
    scope = str(account_id) if account_id else "all"
    return await client.start_workflow(
        RebuildProjectionWorkflow.run,
        RebuildInput(projection, str(account_id) if account_id else None),
        id=f"rebuild-{projection}-{scope}-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )
