"""Temporal workflows: the projector pipeline, projection rebuilds, account onboarding (one or many),
moves and offboarding."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError
from temporalio.workflow import ActivityCancellationType, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from tenancy.onboarding import IMPORT_CHUNK
    from workflows.activities import ErpActivities
    from workflows.messages import (
        AccountInput,
        BuildInput,
        BuildResult,
        BuildState,
        BuildStep,
        DropInput,
        ImportInput,
        ImportResult,
        ImportStep,
        MoveInput,
        MoveResult,
        MoveState,
        OffboardInput,
        OffboardResult,
        OffboardState,
        OnboardResult,
        ProjectorInput,
        RebuildInput,
        RebuildResult,
        RebuildStep,
    )

RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)


@workflow.defn
class ProjectorWorkflow:
    """Keeps one projection's long-running, heartbeating activity alive, forever."""

    @workflow.run
    async def run(self, data: ProjectorInput) -> None:
        await workflow.execute_activity_method(
            ErpActivities.run_projector,
            data,
            start_to_close_timeout=timedelta(seconds=data.run_for_seconds + 600),
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=RETRY,
        )
        workflow.continue_as_new(data)


@workflow.defn
class RebuildProjectionWorkflow:
    """Replays a read model (one account's or all) from the first event, database by database.

    Each account's rebuild is one transaction: readers see its old read model until the new one
    is complete.
    """

    @workflow.run
    async def run(self, data: RebuildInput) -> RebuildResult:
        batches = events = 0
        for database in data.databases:
            result = await workflow.execute_activity_method(
                ErpActivities.rebuild_projection,
                RebuildStep(data.projection, database, data.account_id, events, data.deployment),
                start_to_close_timeout=timedelta(hours=12),
                heartbeat_timeout=timedelta(seconds=10),
                retry_policy=RETRY,
            )
            batches += result.batches
            events += result.events_applied
        return RebuildResult(data.projection, data.account_id, batches, events)


ABORTABLE = ("starting", "preparing", "building")
"""A build's phases in which an abort drops the new version (once switching, it goes on)."""


class Aborted(Exception):
    """An operator aborted the build (`BuildProjectionWorkflow.abort`)."""


async def _build_step(activity: Callable[[ErpActivities, BuildStep], Awaitable[T]], step: BuildStep) -> T:
    """One step of a build, retried until it succeeds."""
    return await workflow.execute_activity_method(
        activity, step, start_to_close_timeout=timedelta(minutes=10), retry_policy=RETRY
    )


@workflow.defn
class BuildProjectionWorkflow:
    """Builds a new version of a read model beside the live one, switches queries to it, and drops
    the version it replaced after a grace period (`queries.blue_green`'s steps, database by database).

    The live version serves queries and keeps projecting throughout. Aborted (the `abort` signal,
    or a cancel) or failed before the switch, the new version is dropped and nothing else changes.
    """

    def __init__(self) -> None:
        self._state = BuildState("starting", {}, {})
        self._abort = False
        self._running: workflow.ActivityHandle[Any] | None = None

    @workflow.query
    def state(self) -> BuildState:
        return self._state

    @workflow.signal
    def abort(self) -> None:
        """Stop building and drop the new version; too late once it is switching in."""
        if self._state.phase in ABORTABLE:
            self._abort = True
            if self._running is not None:
                self._running.cancel()

    async def _step(
        self,
        activity: Callable[[ErpActivities, BuildStep], Awaitable[T]],
        step: BuildStep,
        *,
        long: bool = False,
    ) -> T:
        """A step an abort cancels, then stops after: the long one heartbeats, and a retry goes on
        from its last heartbeat. Cancelled, the build drops the new version only once the step has
        stopped writing to it."""
        handle = workflow.start_activity_method(
            activity,
            step,
            start_to_close_timeout=timedelta(hours=12) if long else timedelta(minutes=10),
            heartbeat_timeout=timedelta(seconds=10) if long else None,
            retry_policy=RETRY,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        self._running = handle
        try:
            result = await handle
        finally:
            self._running = None
        if self._abort:
            raise Aborted
        return result

    @workflow.run
    async def run(self, data: BuildInput) -> BuildResult:
        built: dict[str, int] = {}
        retired: dict[str, int] = {}
        events = 0

        def step(database: str) -> BuildStep:
            return BuildStep(data.projection, database, built.get(database, 0), data.deployment)

        try:
            self._state = BuildState("preparing", built, retired)
            for database in data.databases:
                built[database] = await self._step(ErpActivities.prepare_build, step(database))
            self._state = BuildState("building", built, retired)
            for database in data.databases:
                events += await self._step(ErpActivities.build_version, step(database), long=True)
            self._state = BuildState("switching", built, retired)
        except (ActivityError, asyncio.CancelledError, Aborted):
            self._state = BuildState("aborting", built, retired)
            # Every database: an abort may come before the step that made the version answered.
            for database in data.databases:
                await _build_step(ErpActivities.abort_build, step(database))
            self._state = BuildState("aborted", built, retired)
            if self._abort:
                return BuildResult(data.projection, built, retired, events, aborted=True)
            raise
        for database in data.databases:
            retired[database] = await _build_step(ErpActivities.switch_version, step(database))
        # The retired versions are dropped by a workflow of their own, after the grace period: this
        # one ends now, and the next build of the projection may start meanwhile.
        versions = "-".join(f"{database}-v{version}" for database, version in retired.items())
        await workflow.start_child_workflow(
            DropRetiredWorkflow.run,
            DropInput(data.projection, retired, data.grace_seconds, data.deployment),
            id=f"{workflow.info().workflow_id}-drop-{versions}",
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
        self._state = BuildState(
            "done: live, the retired version dropped after the grace period", built, retired
        )
        return BuildResult(data.projection, built, retired, events)


@workflow.defn
class DropRetiredWorkflow:
    """Drops a build's retired versions once their grace period is over (queries may have been
    planned against them until the switch)."""

    @workflow.run
    async def run(self, data: DropInput) -> None:
        await workflow.sleep(timedelta(seconds=data.grace_seconds))
        for database, version in data.retired.items():
            await _build_step(
                ErpActivities.drop_retired, BuildStep(data.projection, database, version, data.deployment)
            )


ONE_LOCAL_STEP = "onboard-in-one-local-activity"
"""The patch that made onboarding one local activity (partitions are fixed: nothing to create)."""


@workflow.defn
class OnboardAccountWorkflow:
    """Activates a registered account: one local activity (its partition is chosen by AccountId,
    so there is nothing to create), in the workflow's own task, so POST /accounts answers fast.

    Workflows started before the patch replay their two activities as they ran.
    """

    @workflow.run
    async def run(self, data: AccountInput) -> OnboardResult:
        if workflow.patched(ONE_LOCAL_STEP):
            return await workflow.execute_local_activity_method(
                ErpActivities.activate_account,
                data,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RETRY,
            )
        await workflow.execute_activity_method(
            ErpActivities.create_account_partition,
            data,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RETRY,
        )
        return await workflow.execute_activity_method(
            ErpActivities.activate_account,
            data,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RETRY,
        )


@workflow.defn
class ImportAccountsWorkflow:
    """Onboards a bulk import's accounts (registered, keys and all, before it starts), a chunk of
    them per step, until none is left; then the import is finished."""

    @workflow.run
    async def run(self, data: ImportInput) -> ImportResult:
        activated = 0
        while True:
            done = await workflow.execute_activity_method(
                ErpActivities.activate_imported,
                ImportStep(data.import_id, IMPORT_CHUNK, data.deployment),
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=RETRY,
            )
            activated += done
            if done < IMPORT_CHUNK:
                return ImportResult(data.import_id, activated)


T = TypeVar("T")


FENCED_AT_MOST = timedelta(minutes=10)
"""How long the step that runs while the account's writes are refused may take, retries included,
before the move is abandoned and the account takes writes again."""


async def _move_step(
    activity: Callable[[ErpActivities, MoveInput], Awaitable[T]],
    data: MoveInput,
    *,
    copies: bool = False,
    fenced: bool = False,
) -> T:
    """One of a move's steps; one that copies heartbeats while it runs, and a retry goes on where it
    stopped. A `fenced` one is given up (and the move undone) after FENCED_AT_MOST."""
    return await workflow.execute_activity_method(
        activity,
        data,
        start_to_close_timeout=timedelta(hours=12) if copies else timedelta(minutes=5),
        schedule_to_close_timeout=FENCED_AT_MOST if fenced else None,
        heartbeat_timeout=timedelta(seconds=30) if copies else None,
        retry_policy=RETRY,
    )


@workflow.defn
class MoveAccountWorkflow:
    """Moves an account to another tenant database online (`tenancy.moving`'s steps, in order).

    Its commands are refused (503, Retry-After) only from the fence to the switch: the rest of the
    events and a check. A copy that differs from the source, a fenced step that takes more than ten
    minutes or a cancel before the switch abandons the move: the account stays where it was, and
    takes commands again. (Terminated, a workflow cannot undo anything: start the move again.)
    """

    def __init__(self) -> None:
        self._state = MoveState("", "", "starting")

    @workflow.query
    def state(self) -> MoveState:
        return self._state

    def _phase(self, phase: str, **changes: Any) -> None:
        self._state = replace(self._state, phase=phase, **changes)

    @workflow.run
    async def run(self, data: MoveInput) -> MoveResult:
        self._state = MoveState(data.source, data.target, "preparing the target")
        try:
            await _move_step(ErpActivities.prepare_move, data, copies=True)
            self._phase("copying read models")
            rows = await _move_step(ErpActivities.copy_read_models, data, copies=True)
            self._phase("copying events")
            events = await _move_step(ErpActivities.copy_events, data, copies=True)
            self._phase("fencing: writes wait")
            await _move_step(ErpActivities.fence_source, data)
            fenced_at = workflow.now()
            self._phase("copying the rest and checking: writes wait")
            events += await _move_step(ErpActivities.finish_copy, data, copies=True, fenced=True)
        except (ActivityError, asyncio.CancelledError):
            # A copy that differs, a fenced step that took too long, or an operator's cancel: the
            # account stays where it was and takes writes again; the target keeps nothing of it.
            self._phase("abandoned; the account stays where it was")
            await _move_step(ErpActivities.abandon_move, data, copies=True)
            raise
        await _move_step(ErpActivities.switch_route, data)
        fenced = (workflow.now() - fenced_at).total_seconds()
        self._phase("switched; waiting for old routes to expire", fenced_seconds=fenced)
        await workflow.sleep(timedelta(seconds=data.route_ttl * 2))
        self._phase("removing the old copy")
        removed = await _move_step(ErpActivities.purge_source, data, copies=True)
        self._phase("done")
        return MoveResult(data.account_id, data.source, data.target, events, rows, removed, fenced)


async def _offboard_step(
    activity: Callable[[ErpActivities, OffboardInput], Awaitable[T]],
    data: OffboardInput,
    *,
    long: bool = False,
) -> T:
    """One of an offboarding's steps, retried until it succeeds (each goes on where it stopped); a
    long one heartbeats while it runs."""
    return await workflow.execute_activity_method(
        activity,
        data,
        start_to_close_timeout=timedelta(hours=12) if long else timedelta(minutes=5),
        heartbeat_timeout=timedelta(seconds=30) if long else None,
        retry_policy=RETRY,
    )


@workflow.defn
class OffboardAccountWorkflow:
    """Offboards an account (`tenancy.offboarding`'s steps, and the export between them): its keys
    are revoked and its writes refused, its events are exported, and once no API can still hold its
    route every row of it is removed. Other accounts are not held up."""

    def __init__(self) -> None:
        self._state = OffboardState("", "starting")

    @workflow.query
    def state(self) -> OffboardState:
        return self._state

    def _phase(self, phase: str, **changes: Any) -> None:
        self._state = replace(self._state, phase=phase, **changes)

    @workflow.run
    async def run(self, data: OffboardInput) -> OffboardResult:
        self._state = OffboardState(data.database, "revoking keys and fencing writes")
        await _offboard_step(ErpActivities.revoke_account, data)
        self._phase("exporting events")
        exported = await _offboard_step(ErpActivities.export_account, data, long=True)
        self._phase(
            "exported; waiting for old routes to expire",
            export=exported.path,
            events_exported=exported.events,
        )
        await workflow.sleep(timedelta(seconds=data.route_ttl * 2))
        self._phase("removing every row")
        removed = await _offboard_step(ErpActivities.purge_offboarded, data, long=True)
        self._phase("done")
        return OffboardResult(data.account_id, data.database, exported.path, exported.events, removed)


WORKFLOWS = [
    ProjectorWorkflow,
    RebuildProjectionWorkflow,
    BuildProjectionWorkflow,
    DropRetiredWorkflow,
    OnboardAccountWorkflow,
    ImportAccountsWorkflow,
    MoveAccountWorkflow,
    OffboardAccountWorkflow,
]
