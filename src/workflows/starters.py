"""Client side: starting the workflows (the projector pipelines, onboarding, rebuilds, moves,
offboarding) on Temporal."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar
from uuid import UUID

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from core.deployment import Deployment
from core.temporal import TemporalGateway
from queries.registry import PROJECTIONS
from tenancy.catalog import Account, AccountStatus
from tenancy.moves import MoveProgress, MoveRefused
from tenancy.offboards import OffboardProgress, OffboardRefused
from workflows.messages import (
    AccountInput,
    BuildInput,
    BuildProgress,
    BuildState,
    CopyProgress,
    ExportProgress,
    ImportInput,
    ImportResult,
    MoveInput,
    MoveState,
    OffboardInput,
    OffboardState,
    OnboardResult,
    ProjectorInput,
    RebuildInput,
    RebuildProgress,
    RebuildResult,
)
from workflows.workflows import (
    ABORTABLE,
    BuildProjectionWorkflow,
    ImportAccountsWorkflow,
    MoveAccountWorkflow,
    OffboardAccountWorkflow,
    OnboardAccountWorkflow,
    ProjectorWorkflow,
    RebuildProjectionWorkflow,
)

log = logging.getLogger(__name__)
S = TypeVar("S")
R = TypeVar("R")


def projector_workflow_id(deployment: Deployment, projection: str, database: str) -> str:
    return deployment.workflow_id("projector", projection, database)


async def start_projectors(
    client: Client, task_queue: str, deployment: Deployment, databases: list[str]
) -> None:
    """Start each projection's pipeline in each tenant database unless it already runs."""
    for database in databases:
        for name in PROJECTIONS:
            await client.start_workflow(
                ProjectorWorkflow.run,
                ProjectorInput(name, database, deployment=deployment.name),
                id=projector_workflow_id(deployment, name, database),
                task_queue=task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            )


class TemporalOnboarding:
    """Runs `tenancy.onboarding`'s steps as one `OnboardAccountWorkflow` per account opened alone,
    and one `ImportAccountsWorkflow` per bulk import."""

    def __init__(self, temporal: TemporalGateway) -> None:
        self._temporal = temporal

    async def ensure_available(self) -> None:
        await self._temporal.client()

    async def start(self, account: Account) -> None:
        await self._start(account)

    async def run(self, account: Account, within: timedelta) -> str:
        try:
            handle = await self._start(account)
            result = await asyncio.wait_for(handle.result(), within.total_seconds())
        except (RPCError, TimeoutError, WorkflowFailureError):
            log.warning("account %s is still onboarding", account.account_id, exc_info=True)
            return AccountStatus.ONBOARDING
        return result.status

    async def _start(self, account: Account) -> WorkflowHandle[OnboardAccountWorkflow, OnboardResult]:
        """The account's one onboarding workflow: started, or joined while it runs."""
        client = await self._temporal.client()
        deployment = self._temporal.deployment
        return await client.start_workflow(
            OnboardAccountWorkflow.run,
            AccountInput(str(account.account_id), account.database, deployment.name),
            id=deployment.workflow_id("onboard", str(account.account_id)),
            task_queue=self._temporal.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )

    async def start_import(self, import_id: UUID, accounts: int) -> str:
        return (await self._start_import(import_id, accounts)).id

    async def wait_import(self, import_id: UUID, within: timedelta) -> bool:
        client = await self._temporal.client()
        handle = client.get_workflow_handle_for(
            ImportAccountsWorkflow.run, import_workflow_id(self._temporal, import_id)
        )
        try:
            await asyncio.wait_for(handle.result(), within.total_seconds())
        except (RPCError, TimeoutError, WorkflowFailureError):
            log.warning("import %s is still onboarding", import_id, exc_info=True)
            return False
        return True

    async def _start_import(
        self, import_id: UUID, accounts: int
    ) -> WorkflowHandle[ImportAccountsWorkflow, ImportResult]:
        client = await self._temporal.client()
        return await client.start_workflow(
            ImportAccountsWorkflow.run,
            ImportInput(str(import_id), accounts, self._temporal.deployment.name),
            id=import_workflow_id(self._temporal, import_id),
            task_queue=self._temporal.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )


def import_workflow_id(temporal: TemporalGateway, import_id: UUID) -> str:
    return temporal.deployment.workflow_id("import", str(import_id))


class TemporalMoves:
    """Runs `tenancy.moving`'s steps as one `MoveAccountWorkflow` per move, one per account at a time."""

    def __init__(self, temporal: TemporalGateway, route_ttl: float) -> None:
        self._temporal = temporal
        self._route_ttl = route_ttl

    def _workflow_id(self, account_id: UUID) -> str:
        return self._temporal.deployment.workflow_id("move", str(account_id))

    async def start(self, account: Account, target: str) -> str:
        data = MoveInput(
            str(account.account_id),
            account.database,
            target,
            str(uuid.uuid4()),
            self._temporal.deployment.name,
            self._route_ttl,
        )
        started = await _start_once(
            self._temporal, MoveAccountWorkflow.run, data, self._workflow_id(account.account_id)
        )
        if started is None:
            raise MoveRefused(409, f"account {account.account_id} is moving already")
        return started

    async def progress(self, account_id: UUID) -> MoveProgress | None:
        handle = (await self._temporal.client()).get_workflow_handle_for(
            MoveAccountWorkflow.run, self._workflow_id(account_id)
        )
        seen = await _described(self._temporal, handle, MoveAccountWorkflow.state, "events_copied")
        if seen is None:
            return None
        state = seen.state if seen.state is not None else MoveState("?", "?", seen.unknown)
        copied = to_copy = 0
        if seen.heartbeat is not None:
            progress = CopyProgress(**seen.heartbeat)
            copied, to_copy = progress.events_copied, progress.events_to_copy
        if seen.result is not None:
            copied = to_copy = seen.result.events_copied
        return MoveProgress(
            handle.id,
            seen.status,
            state.source,
            state.target,
            state.phase,
            copied,
            to_copy,
            state.fenced_seconds,
            seen.error,
        )


class TemporalOffboarding:
    """Runs `tenancy.offboarding`'s steps as one `OffboardAccountWorkflow` per account."""

    def __init__(self, temporal: TemporalGateway, route_ttl: float) -> None:
        self._temporal = temporal
        self._route_ttl = route_ttl

    def _workflow_id(self, account_id: UUID) -> str:
        return self._temporal.deployment.workflow_id("offboard", str(account_id))

    async def start(self, account: Account) -> str:
        data = OffboardInput(
            str(account.account_id),
            account.database,
            str(uuid.uuid4()),
            self._temporal.deployment.name,
            self._route_ttl,
        )
        workflow_id = self._workflow_id(account.account_id)
        started = await _start_once(self._temporal, OffboardAccountWorkflow.run, data, workflow_id)
        if started is None:
            raise OffboardRefused(409, f"account {account.account_id} is offboarding already")
        return started

    async def progress(self, account_id: UUID) -> OffboardProgress | None:
        handle = (await self._temporal.client()).get_workflow_handle_for(
            OffboardAccountWorkflow.run, self._workflow_id(account_id)
        )
        seen = await _described(self._temporal, handle, OffboardAccountWorkflow.state, "events_exported")
        if seen is None:
            return None
        state = seen.state if seen.state is not None else OffboardState("?", seen.unknown)
        exported = to_export = state.events_exported
        export, removed = state.export, 0
        if seen.heartbeat is not None:
            progress = ExportProgress(**seen.heartbeat)
            exported, to_export = progress.events_exported, progress.events_to_export
        if seen.result is not None:
            exported = to_export = seen.result.events_exported
            export, removed = seen.result.export, seen.result.rows_removed
        return OffboardProgress(
            handle.id,
            seen.status,
            state.database,
            state.phase,
            exported,
            to_export,
            export,
            removed,
            seen.error,
        )


@dataclass(frozen=True, slots=True)
class BuildSeen:
    """A blue/green build of one projection, as its workflow tells it."""

    workflow_id: str
    status: str
    """The workflow's: Running, Completed, Cancelled, Failed, ..."""
    phase: str
    versions: dict[str, int]
    retired: dict[str, int]
    progress: BuildProgress | None
    """The running build step's last heartbeat."""
    error: str | None


class BuildRefused(Exception):
    """A build cannot start, or cannot be aborted, now (409)."""


class TemporalBuilds:
    """Blue/green builds of read models, one `BuildProjectionWorkflow` per projection at a time."""

    def __init__(self, temporal: TemporalGateway, grace_seconds: float) -> None:
        self._temporal = temporal
        self._grace = grace_seconds

    def workflow_id(self, projection: str) -> str:
        return self._temporal.deployment.workflow_id("build", projection)

    async def start(self, projection: str, databases: list[str]) -> str:
        data = BuildInput(projection, databases, self._grace, self._temporal.deployment.name)
        workflow_id = self.workflow_id(projection)
        started = await _start_once(self._temporal, BuildProjectionWorkflow.run, data, workflow_id)
        if started is None:
            raise BuildRefused(
                f"a build of {projection} is running (or waiting to drop the version it retired): "
                "see GET /projections"
            )
        return started

    async def seen(self, projection: str) -> BuildSeen | None:
        """The projection's latest build, or None if it never had one."""
        handle = (await self._temporal.client()).get_workflow_handle_for(
            BuildProjectionWorkflow.run, self.workflow_id(projection)
        )
        seen = await _described(self._temporal, handle, BuildProjectionWorkflow.state, "chunks")
        if seen is None:
            return None
        state = seen.state if seen.state is not None else BuildState(seen.unknown, {}, {})
        progress = BuildProgress(**seen.heartbeat) if seen.heartbeat is not None else None
        return BuildSeen(
            handle.id, seen.status, state.phase, state.versions, state.retired, progress, seen.error
        )

    async def abort(self, projection: str) -> str:
        """Abort the running build (a signal): its new version is dropped, nothing else changes.
        BuildRefused if none is being built (none ran, it ended, or it is switching in)."""
        seen = await self.seen(projection)
        if seen is None or seen.status != "Running" or seen.phase not in ABORTABLE:
            phase = "none ran" if seen is None else f"the last is {seen.status.lower()}, {seen.phase}"
            raise BuildRefused(f"no build of {projection} is running that can be aborted ({phase})")
        handle = (await self._temporal.client()).get_workflow_handle_for(
            BuildProjectionWorkflow.run, seen.workflow_id
        )
        await handle.signal(BuildProjectionWorkflow.abort)
        return seen.workflow_id


async def start_rebuild(
    temporal: TemporalGateway, projection: str, databases: list[str], account_id: UUID | None
) -> WorkflowHandle[RebuildProjectionWorkflow, RebuildResult]:
    """Rebuild one account's read model (pass its database) or every account's in `databases`."""
    client = await temporal.client()
    deployment = temporal.deployment
    return await client.start_workflow(
        RebuildProjectionWorkflow.run,
        RebuildInput(projection, databases, str(account_id) if account_id else None, deployment.name),
        id=rebuild_workflow_id(deployment, projection, account_id, uuid.uuid4().hex[:8]),
        task_queue=temporal.task_queue,
    )


def rebuild_workflow_id(deployment: Deployment, projection: str, account_id: UUID | None, suffix: str) -> str:
    """`<deployment>-rebuild-<projection>-<account id, or all>-<suffix of 8 hex digits>`."""
    return deployment.workflow_id("rebuild", projection, str(account_id) if account_id else "all", suffix)


def rebuild_of(deployment: Deployment, workflow_id: str) -> tuple[str, UUID | None]:
    """The projection and the account (None: every account) of a rebuild's `rebuild_workflow_id`."""
    rest = workflow_id.removeprefix(deployment.workflow_id("rebuild", ""))[: -len("-01234567")]
    if rest.endswith("-all"):
        return rest.removesuffix("-all"), None
    return rest[: -len("-" + str(UUID(int=0)))], UUID(rest[-36:])


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


@dataclass(frozen=True, slots=True)
class _Seen(Generic[S, R]):
    """What an operator's workflow says of itself: its status, its `state` query (None if it did
    not answer, `unknown` saying why), the heartbeat of a running activity that carries progress,
    and its result or error once it ended."""

    status: str
    state: S | None
    unknown: str
    heartbeat: dict[str, Any] | None
    result: R | None
    error: str | None


async def _start_once(temporal: TemporalGateway, run: Any, data: Any, workflow_id: str) -> str | None:
    """Start the workflow under `workflow_id` unless one runs there; its id, or None if one runs."""
    client = await temporal.client()
    try:
        handle = await client.start_workflow(
            run,
            data,
            id=workflow_id,
            task_queue=temporal.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        return None
    return handle.id


async def _described(
    temporal: TemporalGateway, handle: WorkflowHandle[Any, R], query: Callable[[Any], S], progress_key: str
) -> _Seen[S, R] | None:
    """The workflow behind `handle` as `_Seen`, or None if there is none; `progress_key` names the
    field by which a running activity's heartbeat is known to carry progress."""
    client = await temporal.client()
    try:
        description = await handle.describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    status = description.status.name.title() if description.status else "Unknown"
    state: S | None = None
    unknown = ""
    try:
        state = await handle.query(query)
    except (RPCError, WorkflowQueryFailedError) as error:
        unknown = f"unknown ({type(error).__name__})"
    heartbeat: dict[str, Any] | None = None
    for pending in description.raw_description.pending_activities:
        if pending.heartbeat_details.payloads:
            values = await client.data_converter.decode(pending.heartbeat_details.payloads)
            if values and isinstance(values[0], dict) and progress_key in values[0]:
                heartbeat = values[0]
    result: R | None = None
    error_text = None
    if description.status == WorkflowExecutionStatus.COMPLETED:
        result = await handle.result()
    elif description.status == WorkflowExecutionStatus.FAILED:
        try:
            await handle.result()
        except WorkflowFailureError as failure:
            error_text = str(failure.cause)
    return _Seen(status, state, unknown, heartbeat, result, error_text)
