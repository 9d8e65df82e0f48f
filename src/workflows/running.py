"""What operators' long work is doing: the builds, one-account rebuilds and moves that run now or
ended lately, each with its progress, found through Temporal's visibility (`GET /operations`, the
console's progress bars).

A workflow's id says what it works on (`workflows.starters` makes them: `<deployment>-build-<name>`,
`<deployment>-rebuild-<name>-<account or all>-<suffix>`, `<deployment>-move-<account>`), so one
listing call finds them all; each one's progress is then asked of it as GET /projections and GET
/accounts/{AccountId}/move ask it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

from temporalio.client import WorkflowExecution, WorkflowExecutionStatus

from core.temporal import TemporalGateway
from tenancy.moves import AccountMoves
from workflows.operations import ProjectionOperations
from workflows.starters import rebuild_of, rebuild_progress
from workflows.workflows import BuildProjectionWorkflow, MoveAccountWorkflow, RebuildProjectionWorkflow

_log = logging.getLogger(__name__)

KINDS = {
    BuildProjectionWorkflow.__name__: "Build",
    RebuildProjectionWorkflow.__name__: "Rebuild",
    MoveAccountWorkflow.__name__: "Move",
}
MAX_LISTED = 50
"""Workflows one answer shows at most, the latest first."""


@dataclass(frozen=True, slots=True)
class OperatorWorkflow:
    """One build, rebuild or move, and how far it is (`done` of `total` events, when known)."""

    kind: str
    """Build (a new version of a read model), Rebuild (one account's in place, or all) or Move."""
    workflow_id: str
    status: str
    """The workflow's: Running, Completed, Failed, Cancelled, Terminated, ..."""
    started_at: datetime | None
    closed_at: datetime | None
    projection: str | None = None
    account_id: UUID | None = None
    source: str | None = None
    target: str | None = None
    phase: str = ""
    done: int | None = None
    total: int | None = None
    error: str | None = None


class OperatorWorkflows:
    """Lists the deployment's builds, rebuilds and moves."""

    def __init__(
        self, temporal: TemporalGateway, projections: ProjectionOperations, moves: AccountMoves
    ) -> None:
        self._temporal = temporal
        self._projections = projections
        self._moves = moves

    async def listed(self, within: timedelta = timedelta(minutes=10)) -> list[OperatorWorkflow]:
        """Those running, and those that ended within `within`, the latest started first; at most
        `MAX_LISTED`."""
        client = await self._temporal.client()
        since = (datetime.now(UTC) - within).strftime("%Y-%m-%dT%H:%M:%SZ")
        types = ", ".join(f"'{name}'" for name in KINDS)
        query = f"WorkflowType IN ({types}) AND (ExecutionStatus = 'Running' OR CloseTime > '{since}')"
        deployment = self._temporal.deployment
        latest: dict[str, WorkflowExecution] = {}
        async for execution in client.list_workflows(query, limit=4 * MAX_LISTED):
            if not deployment.owns(execution.id):
                continue
            known = latest.get(execution.id)
            if known is None or execution.start_time > known.start_time:
                latest[execution.id] = execution
        executions = sorted(latest.values(), key=lambda e: e.start_time, reverse=True)[:MAX_LISTED]
        return [await self._seen(execution) for execution in executions]

    async def _seen(self, execution: WorkflowExecution) -> OperatorWorkflow:
        """One workflow's row; only what the listing says of it when its progress cannot be read (an
        id of another shape, a workflow that closed between the listing and the question, Temporal or
        a database failing for it), so one workflow never takes the whole list down."""
        kind = KINDS[execution.workflow_type]
        status = execution.status.name.title() if execution.status else "Unknown"
        seen = OperatorWorkflow(kind, execution.id, status, execution.start_time, execution.close_time)
        try:
            return await self._progress(seen, kind, execution)
        except Exception:  # any one workflow's failure: its row without progress
            _log.warning("could not read the progress of %s", execution.id, exc_info=True)
            return seen

    async def _progress(
        self, seen: OperatorWorkflow, kind: str, execution: WorkflowExecution
    ) -> OperatorWorkflow:
        rest = execution.id.removeprefix(self._temporal.deployment.name + "-")
        if kind == "Build":
            return await self._build(seen, rest.removeprefix("build-"))
        if kind == "Move":
            return await self._move(seen, UUID(rest.removeprefix("move-")))
        return await self._rebuild(seen, execution)

    async def _build(self, seen: OperatorWorkflow, projection: str) -> OperatorWorkflow:
        build = await self._projections.builds.seen(projection)
        if build is None or build.workflow_id != seen.workflow_id:
            return replace(seen, projection=projection)
        progress = build.progress
        return replace(
            seen,
            projection=projection,
            phase=build.phase,
            done=progress.events if progress else None,
            total=progress.total if progress else None,
            error=build.error,
        )

    async def _move(self, seen: OperatorWorkflow, account_id: UUID) -> OperatorWorkflow:
        move = await self._moves.progress(account_id)
        if move is None:
            return replace(seen, account_id=account_id)
        return replace(
            seen,
            account_id=account_id,
            source=move.source,
            target=move.target,
            phase=move.phase,
            done=move.events_copied,
            total=move.events_to_copy or None,
            error=move.error,
        )

    async def _rebuild(self, seen: OperatorWorkflow, execution: WorkflowExecution) -> OperatorWorkflow:
        projection, account_id = rebuild_of(self._temporal.deployment, execution.id)
        seen = replace(seen, projection=projection, account_id=account_id)
        client = await self._temporal.client()
        handle = client.get_workflow_handle_for(RebuildProjectionWorkflow.run, execution.id)
        if execution.status == WorkflowExecutionStatus.COMPLETED:
            result = await handle.result()
            return replace(seen, phase="done", done=result.events_applied, total=result.events_applied)
        if execution.status != WorkflowExecutionStatus.RUNNING:
            return seen
        progress = await rebuild_progress(client, handle)
        done = 0 if progress is None else progress.events_before + progress.events + progress.account_events
        try:
            total: int | None = await self._projections.events(projection, account_id)
        except LookupError:  # the account was offboarded, or the projection is no more
            total = None
        return replace(seen, phase="replaying", done=done, total=total)
