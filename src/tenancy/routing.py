"""Routing: AccountId -> tenant database (a pool) and event-store partition, and placing new accounts.

The catalog (in the `main` database) records each account's database. Every
tenant database has the full schema; an account's events, streams and read
models live only in its own database. There, each table that grows with events
has a fixed number of partitions (HASH on AccountId, migration 0009), and an
account's rows live in exactly one of them.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from core.db import create_pool
from core.settings import MAIN_DATABASE, Settings

_PARTITION_OF = r"""
SELECT c.relname
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid), 'modulus (\d+), remainder (\d+)') b
WHERE i.inhparent = 'events'::regclass
  AND satisfies_hash_partition('events'::regclass, b[1]::int, b[2]::int, $1::uuid)
"""


async def event_partition(executor: asyncpg.Pool[Any] | asyncpg.Connection[Any], account_id: UUID) -> str:
    """The partition of `events` that holds the account's events (one of a fixed number, by AccountId)."""
    name: str = await executor.fetchval(_PARTITION_OF, account_id)
    return name


@dataclass(frozen=True, slots=True)
class Route:
    """Where one account's data lives."""

    account_id: UUID
    database: str


class Databases:
    """One asyncpg pool per configured tenant database, opened by `open()` and closed by `close()`."""

    def __init__(self, settings: Settings, *, min_size: int = 2, max_size: int = 20) -> None:
        self._settings = settings
        self._sizes = (min_size, max_size)
        self._pools: dict[str, asyncpg.Pool[Any]] = {}
        self._placeable = settings.placeable
        """Read once: ERP_DEDICATED_DATABASES naming no database stops the process at start, rather
        than every new account with a 500."""

    async def open(self) -> Databases:
        """Open a pool per database (all or none); returns itself."""
        min_size, max_size = self._sizes
        try:
            for name in self._settings.databases:
                self._pools[name] = await create_pool(
                    self._settings.for_database(name), min_size=min_size, max_size=max_size
                )
        except BaseException:
            await self.close()
            raise
        return self

    @property
    def main(self) -> asyncpg.Pool[Any]:
        """The database that also holds the account catalog."""
        return self.pool(MAIN_DATABASE)

    def pool(self, name: str) -> asyncpg.Pool[Any]:
        try:
            return self._pools[name]
        except KeyError:
            if name in self._settings.databases:
                raise RuntimeError(f"the pool of database {name!r} is not open") from None
            raise LookupError(f"no tenant database named {name!r} is configured") from None

    def url(self, name: str) -> str:
        return self._settings.databases[name]

    def names(self) -> list[str]:
        return list(self._settings.databases)

    def placeable(self) -> list[str]:
        """The databases new accounts may go to (not the dedicated ones)."""
        return self._placeable

    def __iter__(self) -> Iterator[tuple[str, asyncpg.Pool[Any]]]:
        return iter(self._pools.items())

    async def close(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            await pool.close()


def place(databases: list[str], accounts: Mapping[str, int]) -> str:
    """The database for a new account: the one with the fewest accounts (new accounts spread evenly)."""
    return min(databases, key=lambda name: (accounts.get(name, 0), databases.index(name)))


def place_many(databases: list[str], accounts: Mapping[str, int], count: int) -> list[str]:
    """The databases for `count` new accounts, each placed as `place` would after the ones before."""
    held = [(accounts.get(name, 0), order, name) for order, name in enumerate(databases)]
    heapq.heapify(held)
    placed = []
    for _ in range(count):
        n, order, name = heapq.heappop(held)
        placed.append(name)
        heapq.heappush(held, (n + 1, order, name))
    return placed
