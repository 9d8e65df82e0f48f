"""Temporal activities: the projector loop, rebuild steps, onboarding steps, a move's steps and an
offboarding's (the export of its events among them)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from temporalio import activity
from temporalio.exceptions import ApplicationError

from commands.store.export import export_events, export_line, plan_export
from commands.store.feed import EventFeed
from core import metrics
from core.deployment import Deployment
from queries import versions
from queries.blue_green import START, Build, Chunk, Cursor, NotBuilt, ShapeChanged, drop_retired
from queries.build_process import bulk_pass_in_process
from queries.model_projection import ModelProjection
from queries.notifications import Notifier
from queries.projector import Projector, follow, rebuild_account
from queries.registry import PROJECTIONS
from tenancy.catalog import AccountStatus
from tenancy.copying import SchemaMismatch
from tenancy.moving import AccountMover, MoveAbandoned, MoveStep
from tenancy.offboarding import AccountOffboarder, OffboardAbandoned, OffboardStep
from tenancy.onboarding import Onboarding
from tenancy.routing import Databases
from workflows.messages import (
    AccountInput,
    BuildProgress,
    BuildStep,
    CopyProgress,
    ExportProgress,
    ExportResult,
    ImportStep,
    MoveInput,
    OffboardInput,
    OnboardResult,
    ProjectorInput,
    RebuildProgress,
    RebuildResult,
    RebuildStep,
)

T = TypeVar("T")


def _projection(name: str) -> ModelProjection:
    projection = PROJECTIONS.get(name)
    if projection is None:
        raise ValueError(f"unknown projection {name!r}")
    return projection


class ErpActivities:
    """Activities sharing the worker's tenant-database pools, event feed and Redis notifier.

    Each runs only its own deployment's work: an input naming another deployment (two deployments
    sharing a task queue by mistake) is refused, and retried until a worker of its own takes it.
    """

    def __init__(
        self,
        databases: Databases,
        feed: EventFeed,
        notifier: Notifier,
        onboarding: Onboarding,
        mover: AccountMover,
        deployment: Deployment,
        *,
        offboarder: AccountOffboarder | None = None,
        export_dir: str = ".erp/exports",
    ) -> None:
        """`offboarder` None: offboarding's steps are not served (their activities fail and are
        retried); `export_dir` is where an offboarded account's events are written (ERP_EXPORT_DIR)."""
        self._databases = databases
        self._feed = feed
        self._notifier = notifier
        self._onboarding = onboarding
        self._mover = mover
        self._deployment = deployment
        self._offboarder = offboarder
        self._export_dir = Path(export_dir)

    @property
    def deployment(self) -> Deployment:
        return self._deployment

    def _ours(self, deployment: str) -> None:
        """Refuse another deployment's task (its own worker will take the retry)."""
        if deployment == self._deployment.name:
            return
        if not deployment:
            raise ApplicationError(
                "this task was started before deployments had ids; its workflow ends here "
                "(the worker starts its projectors again under their new ids)",
                type="ForeignDeployment",
                non_retryable=True,
            )
        raise ApplicationError(
            f"this worker serves deployment {self._deployment.name}, not {deployment}: two deployments "
            "share a task queue; leave ERP_TASK_QUEUE unset so that each uses its own",
            type="ForeignDeployment",
        )

    def _projector(self, name: str, database: str) -> Projector:
        pool = self._databases.pool(database)
        return Projector(pool, _projection(name), self._feed, self._notifier, database=database)

    @activity.defn
    async def run_projector(self, data: ProjectorInput) -> None:
        """Keep a projection of one database current until `run_for_seconds` pass, heartbeating."""
        self._ours(data.deployment)
        projector = self._projector(data.projection, data.database)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.call_later(data.run_for_seconds, stop.set)
        dsn = self._databases.url(data.database)
        await follow(projector, dsn, heartbeat=activity.heartbeat, stop=stop)

    @activity.defn
    async def rebuild_projection(self, data: RebuildStep) -> RebuildResult:
        """Rebuild a projection in one database, account by account, each in one transaction.

        Heartbeats carry a RebuildProgress; a retried attempt starts after the last account done.
        """
        self._ours(data.deployment)
        projector = self._projector(data.projection, data.database)
        only = UUID(data.account_id) if data.account_id else None
        accounts = [only] if only else await projector.accounts()
        total = (await projector.lag(only)).head
        scope = (data.projection, f"{data.database}/{data.account_id or 'all'}")
        details = activity.info().heartbeat_details
        if details:
            done = replace(RebuildProgress(**details[0]), account_events=0)
        else:
            done = RebuildProgress(len(accounts), 0, 0, 0, events_before=data.events_before)
        if done.last_account is not None:
            accounts = [a for a in accounts if str(a) > done.last_account]

        def beat(progress: RebuildProgress) -> None:
            activity.heartbeat(asdict(progress))
            replayed = progress.events + progress.account_events
            metrics.REBUILDS[scope] = min(1.0, replayed / total) if total else 1.0

        for account_id in accounts:

            def applied(events: int, before: RebuildProgress = done) -> None:
                beat(replace(before, account_events=events))

            rebuilt = await rebuild_account(projector, account_id, applied)
            done = replace(
                done,
                accounts_done=done.accounts_done + 1,
                events=done.events + rebuilt.events,
                batches=done.batches + rebuilt.batches,
                last_account=str(account_id),
            )
            beat(done)
        metrics.REBUILDS.pop(scope, None)
        return RebuildResult(data.projection, data.account_id, done.batches, done.events)

    def _build(self, data: BuildStep) -> Build:
        pool = self._databases.pool(data.database)
        return Build(pool, _projection(data.projection), self._feed, data.version)

    @activity.defn
    async def prepare_build(self, data: BuildStep) -> int:
        """A new version of the projection, being built, in one database (or the one being built
        already, if it has today's shape); its number."""
        self._ours(data.deployment)
        pool = self._databases.pool(data.database)
        build = await Build.prepare(pool, _projection(data.projection), self._feed)
        return build.version

    @activity.defn
    async def build_version(self, data: BuildStep) -> int:
        """Replay every account into the version (the bulk pass), then catch it up with the store;
        how many events. Heartbeats carry a BuildProgress; a retried attempt goes on from the cursor
        of the last one Temporal kept (the checkpoints say where each account is)."""
        self._ours(data.deployment)
        build = self._build(data)
        async with _final(ShapeChanged):
            await build.check_shape()
        details = activity.info().heartbeat_details
        replayed, head = await build.events()  # the checkpoints say what earlier attempts committed
        attempt = activity.info().attempt
        if details:
            progress = replace(BuildProgress(**details[0]), events=replayed, attempt=attempt)
        else:
            progress = BuildProgress(data.database, data.version, replayed, head, attempt=attempt)
        cursor = START
        if progress.cursor_account is not None:
            cursor = Cursor(UUID(progress.cursor_account), progress.cursor_stream_type)
        scope = (data.projection, f"{data.database}/v{data.version}")

        def beat(update: BuildProgress) -> None:
            nonlocal progress
            progress = update
            activity.heartbeat(asdict(update))
            metrics.REBUILDS[scope] = min(1.0, update.events / update.total) if update.total else 1.0

        def chunk_done(chunk: Chunk) -> None:
            beat(
                replace(
                    progress,
                    events=progress.events + chunk.events,
                    chunks=progress.chunks + 1,
                    cursor_account=str(chunk.cursor.account_id),
                    cursor_stream_type=chunk.cursor.stream_type,
                )
            )

        beat(progress)
        # In a process of its own: the worker's event loop (its live projectors) is not held up.
        url = self._databases.url(data.database)
        await bulk_pass_in_process(url, data.projection, data.version, cursor, chunk_done)
        beat(replace(progress, phase="catching up"))
        caught_up = await build.catch_up(lambda: activity.heartbeat(asdict(progress)))
        beat(replace(progress, events=progress.events + caught_up, phase="caught up"))
        metrics.REBUILDS.pop(scope, None)
        return progress.events

    @activity.defn
    async def switch_version(self, data: BuildStep) -> int:
        """Switch queries to the version built, in one database; the version it retired. It is
        caught up and analysed first, so that the live projector waits for little."""
        self._ours(data.deployment)
        build = self._build(data)
        async with _final(NotBuilt, ShapeChanged):
            live = await versions.live(build.pool, data.projection)
            if live is None or live.version != data.version:
                await build.check_shape()
                await build.catch_up(activity.heartbeat)
                await build.analyze()
            return await build.switch(notifier=self._notifier, beat=activity.heartbeat)

    @activity.defn
    async def abort_build(self, data: BuildStep) -> None:
        """Drop the version of the projection being built in one database, and everything of it
        (whichever number it has: an abort may come before the step that made it answered)."""
        self._ours(data.deployment)
        pool = self._databases.pool(data.database)
        running = await versions.building(pool, data.projection)
        if running is not None:
            await Build(pool, _projection(data.projection), self._feed, running.version).abort()

    @activity.defn
    async def drop_retired(self, data: BuildStep) -> None:
        """Drop a retired version of the projection, after its grace period."""
        self._ours(data.deployment)
        async with _final(NotBuilt):
            await drop_retired(
                self._databases.pool(data.database), _projection(data.projection), data.version
            )

    @activity.defn
    async def create_account_partition(self, data: AccountInput) -> str:
        """The account's partition of `events`, in the account's own database. Partitions are fixed
        now (chosen by AccountId), so nothing is created; the name stays for workflows in flight."""
        self._ours(data.deployment)
        return await self._onboarding.find_partition(UUID(data.account_id), data.database)

    @activity.defn
    async def activate_account(self, data: AccountInput) -> OnboardResult:
        self._ours(data.deployment)
        account_id = UUID(data.account_id)
        await self._onboarding.activate(account_id)
        partition = await self._onboarding.find_partition(account_id, data.database)
        return OnboardResult(data.account_id, partition, AccountStatus.ACTIVE)

    @activity.defn
    async def prepare_move(self, data: MoveInput) -> None:
        self._ours(data.deployment)
        async with _final_if_abandoned():
            await _beating(self._mover.prepare(_step(data)))

    @activity.defn
    async def copy_read_models(self, data: MoveInput) -> int:
        self._ours(data.deployment)
        async with _final_if_abandoned():
            return await _beating(self._mover.copy_read_models(_step(data)))

    @activity.defn
    async def copy_events(self, data: MoveInput) -> int:
        self._ours(data.deployment)
        async with _final_if_abandoned():
            return await _beating(self._mover.copy_events(_step(data), _copy_progress))

    @activity.defn
    async def fence_source(self, data: MoveInput) -> None:
        self._ours(data.deployment)
        await self._mover.fence_source(_step(data))

    @activity.defn
    async def finish_copy(self, data: MoveInput) -> int:
        """The rest of the events and a check; a copy that differs is final (the move is abandoned)."""
        self._ours(data.deployment)
        async with _final_if_abandoned():
            return await _beating(self._mover.finish_copy(_step(data), _copy_progress))

    @activity.defn
    async def switch_route(self, data: MoveInput) -> None:
        self._ours(data.deployment)
        await self._mover.switch(_step(data))

    @activity.defn
    async def abandon_move(self, data: MoveInput) -> None:
        self._ours(data.deployment)
        await _beating(self._mover.abandon(_step(data)))

    @activity.defn
    async def purge_source(self, data: MoveInput) -> int:
        self._ours(data.deployment)
        return await _beating(self._mover.purge(UUID(data.account_id), data.source))

    def _offboarding(self) -> AccountOffboarder:
        if self._offboarder is None:
            raise RuntimeError("this worker was built without offboarding's steps")
        return self._offboarder

    @activity.defn
    async def revoke_account(self, data: OffboardInput) -> None:
        self._ours(data.deployment)
        async with _final_if_abandoned():
            await self._offboarding().revoke(_offboard_step(data))

    @activity.defn
    async def export_account(self, data: OffboardInput) -> ExportResult:
        """The account's events (fenced: they no longer change) as JSON lines, upcast, in
        `<export_dir>/<AccountId>.jsonl` (0600): written to a file of its own in the same directory
        and renamed, so a retry rewrites it whole and no reader sees half of it. Heartbeats carry
        an ExportProgress."""
        self._ours(data.deployment)
        account_id = UUID(data.account_id)
        pool = self._databases.pool(data.database)
        plan = await plan_export(pool, account_id)
        self._export_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = self._export_dir / f"{account_id}.jsonl"
        partial = self._export_dir / f".{account_id}.{uuid.uuid4().hex}.partial"
        written = 0
        activity.heartbeat(asdict(ExportProgress(written, plan.events)))
        try:
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as sink:
                async for events in export_events(pool, self._feed, plan):
                    sink.write(b"".join(map(export_line, events)))
                    written += len(events)
                    activity.heartbeat(asdict(ExportProgress(written, plan.events)))
                sink.flush()
                os.fsync(sink.fileno())
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
        _sync_directory(self._export_dir)
        return ExportResult(str(final.resolve()), written)

    @activity.defn
    async def purge_offboarded(self, data: OffboardInput) -> int:
        self._ours(data.deployment)
        async with _final_if_abandoned():
            return await _beating(self._offboarding().purge(_offboard_step(data)))

    @activity.defn
    async def activate_imported(self, data: ImportStep) -> int:
        """Activate up to `limit` of an import's accounts still onboarding; fewer means it is done."""
        self._ours(data.deployment)
        return await self._onboarding.activate_imported(UUID(data.import_id), data.limit)

    def all(self) -> list[Any]:
        return [
            self.run_projector,
            self.rebuild_projection,
            self.prepare_build,
            self.build_version,
            self.switch_version,
            self.abort_build,
            self.drop_retired,
            self.create_account_partition,
            self.activate_account,
            self.activate_imported,
            self.prepare_move,
            self.copy_read_models,
            self.copy_events,
            self.fence_source,
            self.finish_copy,
            self.switch_route,
            self.abandon_move,
            self.purge_source,
            self.revoke_account,
            self.export_account,
            self.purge_offboarded,
        ]


@contextlib.asynccontextmanager
async def _final(*errors: type[Exception]) -> AsyncIterator[None]:
    """These errors fail the activity for good (a retry would meet them again); others are retried."""
    try:
        yield
    except errors as error:
        raise ApplicationError(str(error), type=type(error).__name__, non_retryable=True) from error


def _final_if_abandoned() -> contextlib.AbstractAsyncContextManager[None]:
    """A move that cannot go on (its copy differs, the tables differ, the account is not where it
    was said to be) fails for good, and the workflow undoes it; so does an offboarding that finds
    the account not as it expected (nothing is done then); anything else is retried."""
    return _final(MoveAbandoned, SchemaMismatch, OffboardAbandoned)


def _step(data: MoveInput) -> MoveStep:
    return MoveStep(UUID(data.account_id), data.source, data.target, UUID(data.move_id))


def _offboard_step(data: OffboardInput) -> OffboardStep:
    return OffboardStep(UUID(data.account_id), data.database, UUID(data.offboard_id))


def _sync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _copy_progress(copied: int, total: int) -> None:
    activity.heartbeat(asdict(CopyProgress(copied, total)))


async def _beating(work: Awaitable[T], every: float = 5.0) -> T:
    """Run `work`, heartbeating at least every `every` seconds meanwhile (a long transaction beats
    too); a cancelled activity cancels it."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            activity.heartbeat()

    beating = asyncio.create_task(beat())
    try:
        return await work
    finally:
        beating.cancel()
