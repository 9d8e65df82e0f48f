"""Temporal workflows: the projector pipeline, projection rebuilds and account onboarding (one or many)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from tenancy.onboarding import IMPORT_CHUNK
    from workflows.activities import ErpActivities
    from workflows.messages import (
        AccountInput,
        ImportInput,
        ImportResult,
        ImportStep,
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


WORKFLOWS = [ProjectorWorkflow, RebuildProjectionWorkflow, OnboardAccountWorkflow, ImportAccountsWorkflow]
