"""GET /operations tells a rebuild's projection and account from its workflow id alone: the id
`start_rebuild` gives reads back, for one account and for all, whatever the projection's name."""

from __future__ import annotations

import uuid

import pytest

from core.deployment import Deployment
from workflows.starters import rebuild_of, rebuild_workflow_id

DEPLOYMENT = Deployment(uuid.UUID("0123456789abcdef0123456789abcdef"))


@pytest.mark.parametrize("projection", ["orders", "open_amounts"])
@pytest.mark.parametrize("account_id", [None, uuid.uuid4()])
def test_a_rebuild_id_reads_back(projection: str, account_id: uuid.UUID | None) -> None:
    workflow_id = rebuild_workflow_id(DEPLOYMENT, projection, account_id, uuid.uuid4().hex[:8])
    assert workflow_id.startswith("erp-0123456789ab-rebuild-")
    assert rebuild_of(DEPLOYMENT, workflow_id) == (projection, account_id)


async def test_a_workflow_whose_progress_cannot_be_read_is_listed_without_it() -> None:
    """A move's id of another shape (or Temporal failing for one workflow) leaves its row bare; it
    does not turn GET /operations into a 500 for every workflow."""
    from datetime import UTC, datetime
    from types import SimpleNamespace
    from typing import Any, cast

    from temporalio.client import WorkflowExecution, WorkflowExecutionStatus

    from workflows.running import OperatorWorkflows

    temporal = cast(Any, SimpleNamespace(deployment=DEPLOYMENT))
    listing = OperatorWorkflows(temporal, cast(Any, None), cast(Any, None))
    execution = cast(
        WorkflowExecution,
        SimpleNamespace(
            id=f"{DEPLOYMENT.name}-move-not-a-uuid",
            workflow_type="MoveAccountWorkflow",
            status=WorkflowExecutionStatus.RUNNING,
            start_time=datetime.now(UTC),
            close_time=None,
        ),
    )
    seen = await listing._seen(execution)
    assert (seen.kind, seen.workflow_id, seen.status) == ("Move", execution.id, "Running")
    assert seen.account_id is None and seen.done is None
