"""Wires the API's collaborators once, at startup: pools, catalog, command service, waiter, Temporal."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import redis.asyncio as redis
from litestar.channels import ChannelsPlugin
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from temporalio.client import Client

from commands.handlers import CommandSpec
from commands.service import CommandService
from commands.stream_cache import StreamCache
from commands.wakeup import ProjectorWakeup
from erp.redis_client import redis_client
from erp.settings import Settings
from erp.temporal import TemporalUnavailable, connect_temporal
from queries.consistency import ConsistencyWaiter
from tenancy.accounts import AccountCatalog, KeyCache
from tenancy.routing import Databases, Route


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
                    try:
                        self._client = await asyncio.wait_for(connect_temporal(self._settings), 5)
                    except (RuntimeError, TimeoutError) as error:  # the SDK's "Failed client connect"
                        raise TemporalUnavailable(str(error)) from error
        return self._client


class Services:
    """The API's collaborators (a plain class, so Litestar injects it without introspecting it)."""

    def __init__(
        self,
        settings: Settings,
        databases: Databases,
        engine: AsyncEngine,
        redis_client: redis.Redis,
        channels: ChannelsPlugin,
        commands: dict[str, CommandSpec] | None = None,
    ) -> None:
        self.settings = settings
        self.databases = databases
        self.engine = engine
        self.redis = redis_client
        self.catalog = AccountCatalog(engine)
        self.keys = KeyCache(self.catalog)
        self.waiter = ConsistencyWaiter(channels)
        self.temporal = TemporalGateway(settings)
        self._wakeups = {name: ProjectorWakeup(pool) for name, pool in databases}
        self._commands = {
            name: CommandService(pool, commands=commands, wakeup=self._wakeups[name], cache=StreamCache())
            for name, pool in databases
        }

    def commands(self, route: Route) -> CommandService:
        """The command pipeline of the account's database."""
        return self._commands[route.database]

    def pool(self, route: Route) -> asyncpg.Pool[Any]:
        """The pool of the account's database."""
        return self.databases.pool(route.database)

    @classmethod
    async def start(
        cls, settings: Settings, channels: ChannelsPlugin, commands: dict[str, CommandSpec] | None = None
    ) -> Services:
        databases = await Databases.open(settings, min_size=2, max_size=20)
        engine = create_async_engine(settings.sqlalchemy_url, pool_size=5, pool_pre_ping=True)
        client = redis_client(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        return cls(settings, databases, engine, client, channels, commands)

    async def close(self) -> None:
        for wakeup in self._wakeups.values():
            await wakeup.close()
        await self.databases.close()
        await self.engine.dispose()
        await self.redis.aclose()
