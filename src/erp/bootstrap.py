"""Wires the API's collaborators once, at startup: pools, catalog, command service, waiter, Temporal."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import redis.asyncio as redis
from litestar.channels import ChannelsPlugin
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from temporalio.client import Client

from commands.service import CommandService
from commands.stream_cache import StreamCache
from commands.wakeup import ProjectorWakeup
from erp.db import create_pool
from erp.settings import Settings
from erp.temporal import connect_temporal
from queries.consistency import ConsistencyWaiter
from tenancy.accounts import AccountCatalog, KeyCache


class TemporalGateway:
    """A Temporal client connected on first use, so the API starts (and reports 503) without Temporal."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await asyncio.wait_for(connect_temporal(self._settings), 5)
        return self._client


class Services:
    """The API's collaborators (a plain class, so Litestar injects it without introspecting it)."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool[Any],
        engine: AsyncEngine,
        redis_client: redis.Redis,
        catalog: AccountCatalog,
        channels: ChannelsPlugin,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.engine = engine
        self.redis = redis_client
        self.catalog = catalog
        self.keys = KeyCache(catalog)
        self.wakeup = ProjectorWakeup(pool)
        self.commands = CommandService(pool, wakeup=self.wakeup, cache=StreamCache())
        self.waiter = ConsistencyWaiter(pool, channels)
        self.temporal = TemporalGateway(settings)

    @classmethod
    async def start(cls, settings: Settings, channels: ChannelsPlugin) -> Services:
        pool = await create_pool(settings, min_size=4, max_size=20)
        engine = create_async_engine(settings.sqlalchemy_url, pool_size=5, pool_pre_ping=True)
        redis_client = redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        return cls(settings, pool, engine, redis_client, AccountCatalog(engine), channels)

    async def close(self) -> None:
        await self.wakeup.close()
        await self.pool.close()
        await self.engine.dispose()
        await self.redis.aclose()
