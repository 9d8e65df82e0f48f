"""Routing: AccountId -> tenant database (a pool) and event-store partition.

The catalog (in the `main` database) records each account's database. Every
tenant database has the full schema; an account's events, streams and read
models live only in its own database, in its own partition of `events`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from erp.db import create_pool
from erp.settings import MAIN_DATABASE, Settings
from tenancy.onboarding import partition_name


@dataclass(frozen=True, slots=True)
class Route:
    """Where one account's data lives."""

    account_id: UUID
    database: str

    @property
    def partition(self) -> str:
        return partition_name(self.account_id)


class Databases:
    """One asyncpg pool per tenant database."""

    def __init__(self, pools: dict[str, asyncpg.Pool[Any]]) -> None:
        self._pools = pools

    @classmethod
    async def open(cls, settings: Settings, *, min_size: int = 2, max_size: int = 20) -> Databases:
        pools: dict[str, asyncpg.Pool[Any]] = {}
        try:
            for name in settings.databases:
                pools[name] = await create_pool(
                    settings.for_database(name), min_size=min_size, max_size=max_size
                )
        except BaseException:
            for pool in pools.values():
                await pool.close()
            raise
        return cls(pools)

    @property
    def main(self) -> asyncpg.Pool[Any]:
        """The database that also holds the account catalog."""
        return self._pools[MAIN_DATABASE]

    def pool(self, name: str) -> asyncpg.Pool[Any]:
        try:
            return self._pools[name]
        except KeyError:
            raise LookupError(f"no tenant database named {name!r} is configured") from None

    def names(self) -> list[str]:
        return list(self._pools)

    def __iter__(self) -> Iterator[tuple[str, asyncpg.Pool[Any]]]:
        return iter(self._pools.items())

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()


async def place_account(main: asyncpg.Pool[Any], databases: list[str]) -> str:
    """The configured database with the fewest accounts (new accounts spread evenly)."""
    rows = await main.fetch("SELECT database, count(*) AS n FROM accounts GROUP BY database")
    counts = {r["database"]: r["n"] for r in rows}
    return min(databases, key=lambda name: (counts.get(name, 0), databases.index(name)))


class Router:
    """Resolves an AccountId to its Route from the catalog, remembering answers for a while."""

    def __init__(self, main: asyncpg.Pool[Any], ttl: float = 60.0) -> None:
        self._main = main
        self._ttl = ttl
        self._routes: dict[UUID, tuple[float, Route]] = {}

    async def route(self, account_id: UUID) -> Route | None:
        now = time.monotonic()
        cached = self._routes.get(account_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        database = await self._main.fetchval(
            "SELECT database FROM accounts WHERE account_id = $1", account_id
        )
        if database is None:
            return None
        route = Route(account_id, database)
        self._routes[account_id] = (now + self._ttl, route)
        return route
