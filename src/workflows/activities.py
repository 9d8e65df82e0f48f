"""Temporal activities: the projector loop, rebuild steps and onboarding steps."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from temporalio import activity

from erp import metrics
from erp.settings import Settings
from queries.notifications import Notifier
from queries.projector import Lag, Projector
from queries.registry import PROJECTIONS
from tenancy.accounts import AccountStatus
from tenancy.onboarding import create_event_partition, partition_name
from tenancy.routing import Databases
from workflows.messages import (
    AccountInput,
    OnboardResult,
    ProjectorInput,
    RebuildResult,
    RebuildStep,
)

HEARTBEAT_EVERY = 2.0


class ErpActivities:
    """Activities sharing the worker's tenant-database pools and Redis notifier."""

    def __init__(self, databases: Databases, notifier: Notifier, settings: Settings) -> None:
        self._databases = databases
        self._notifier = notifier
        self._settings = settings

    def _projector(self, name: str, database: str) -> Projector:
        projection = PROJECTIONS.get(name)
        if projection is None:
            raise ValueError(f"unknown projection {name!r}")
        return Projector(self._databases.pool(database), projection, self._notifier, database=database)

    @activity.defn
    async def run_projector(self, data: ProjectorInput) -> None:
        """Keep a projection of one database current until `run_for_seconds` pass, heartbeating."""
        projector = self._projector(data.projection, data.database)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.call_later(data.run_for_seconds, stop.set)
        dsn = self._settings.databases[data.database]
        await projector.run_forever(dsn, heartbeat=activity.heartbeat, stop=stop)

    @activity.defn
    async def reset_projection(self, data: RebuildStep) -> None:
        account = UUID(data.account_id) if data.account_id else None
        await self._projector(data.projection, data.database).reset(account)

    @activity.defn
    async def replay_projection(self, data: RebuildStep) -> RebuildResult:
        """Apply batches until the projection has caught up; heartbeats carry progress."""
        account = UUID(data.account_id) if data.account_id else None
        projector = self._projector(data.projection, data.database)
        scope = (data.projection, f"{data.database}/{data.account_id or 'all'}")

        def progress(lag: Lag) -> None:
            activity.heartbeat({"head": lag.head, "position": lag.position})
            metrics.REBUILDS[scope] = lag.position / lag.head if lag.head else 1.0

        batches = await projector.catch_up(account, progress=progress, every=HEARTBEAT_EVERY)
        metrics.REBUILDS.pop(scope, None)
        lag = await projector.lag(account)
        return RebuildResult(data.projection, data.account_id, batches, lag.position)

    @activity.defn
    async def create_account_partition(self, data: AccountInput) -> str:
        """The account's partition of `events`, in the account's own database."""
        async with self._databases.pool(data.database).acquire() as connection:
            return await create_event_partition(connection, UUID(data.account_id))

    @activity.defn
    async def activate_account(self, data: AccountInput) -> OnboardResult:
        account_id = UUID(data.account_id)
        async with self._databases.main.acquire() as connection:
            await connection.execute(
                "UPDATE accounts SET status = $2 WHERE account_id = $1",
                account_id,
                AccountStatus.ACTIVE,
            )
        return OnboardResult(data.account_id, partition_name(account_id), AccountStatus.ACTIVE)

    def all(self) -> list[Any]:
        return [
            self.run_projector,
            self.reset_projection,
            self.replay_projection,
            self.create_account_partition,
            self.activate_account,
        ]
