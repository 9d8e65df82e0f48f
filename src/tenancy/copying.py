"""Copying one account's rows between tenant databases: which tables hold them, and a binary COPY
piped from one connection straight into another (no row is decoded on the way)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import asyncpg

CATALOG_TABLES = frozenset({"accounts", "api_keys", "account_fences"})
"""Tables with an `account_id` that are not the account's data: the catalog, and the fences."""

STORE_TABLES = (
    "events",
    "streams",
    "stream_sequences",
    "command_log",
    "customisations",
    "subject_keys",
    "snapshots",
)
"""The account's write side; every other table with an `account_id` is its read side."""

_ACCOUNT_TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND a.attname = 'account_id' AND NOT a.attisdropped
ORDER BY c.relname
"""
_COLUMNS = """
SELECT attname FROM pg_attribute
WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
ORDER BY attnum
"""


class SchemaMismatch(RuntimeError):
    """The two databases' tables differ: migrate both to the same version first."""


async def account_tables(connection: asyncpg.Connection[Any]) -> list[str]:
    """Every table holding accounts' data (`account_id`), the catalog's own left out."""
    rows = await connection.fetch(_ACCOUNT_TABLES)
    return [r["relname"] for r in rows if r["relname"] not in CATALOG_TABLES]


_VERSION = re.compile(r"__v\d+$")
"""A read model's version being built or retired (`queries.blue_green`): each database builds its own."""


PER_PROJECTION = frozenset({"projection_checkpoints", "parked_events", "fan_out_jobs"})
OWN_COLUMNS = {"read_model_changes": frozenset({"changed"})}
"""Columns whose values are a database's own (a transaction id): a copy leaves them to the target's
default (its own transaction's id), so that the target's chained read models find the changes."""
"""Read-side tables whose rows name their projection, and so maybe a version of it (`name@vN`)."""


def read_side_rows(table: str) -> str:
    """Which of the account's rows of a read-side table move with it (`$1`: its AccountId): those of
    live read models, not of versions being built or retired."""
    if table in PER_PROJECTION:
        return "account_id = $1 AND position('@v' IN projection) = 0"
    return "account_id = $1"


def read_side(tables: list[str]) -> list[str]:
    """The account's read-side tables, without versions being built or retired (those are the
    database's own, built from its events)."""
    return [t for t in tables if t not in STORE_TABLES and not _VERSION.search(t)]


async def common_columns(
    source: asyncpg.Connection[Any], target: asyncpg.Connection[Any], table: str
) -> list[str]:
    """The table's columns, which both databases must have alike."""
    ours = [r["attname"] for r in await source.fetch(_COLUMNS, table)]
    theirs = [r["attname"] for r in await target.fetch(_COLUMNS, table)]
    if set(ours) != set(theirs):
        raise SchemaMismatch(
            f"{table} differs between the databases (only in the source: {sorted(set(ours) - set(theirs))}, "
            f"only in the target: {sorted(set(theirs) - set(ours))}); migrate both to the same version"
        )
    return ours


def quoted(names: list[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


async def scope(connection: asyncpg.Connection[Any], account_id: UUID) -> None:
    """Scope the connection's transaction to the account, so row-level security lets its rows through."""
    await connection.execute("SELECT set_config('erp.account_id', $1, true)", str(account_id))


async def pipe(
    source: asyncpg.Connection[Any],
    target: asyncpg.Connection[Any],
    table: str,
    columns: list[str],
    where: str,
    *args: Any,
) -> int:
    """COPY the rows of `table` that `where` selects in the source into the same table of the target,
    binary, chunk by chunk as they come; how many rows. Both run in their callers' transactions."""
    chunks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)  # at most 16 chunks in memory

    async def produce() -> None:
        query = f"SELECT {quoted(columns)} FROM {table} WHERE {where}"
        await source.copy_from_query(query, *args, output=chunks.put, format="binary")

    async def consume() -> AsyncIterator[bytes]:
        while not (chunks.empty() and producer.done()):
            getter = asyncio.ensure_future(chunks.get())
            await asyncio.wait({getter, producer}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield getter.result()
            else:
                getter.cancel()

    producer = asyncio.create_task(produce())
    try:
        status = await target.copy_to_table(table, source=consume(), columns=columns, format="binary")
        await producer  # a source that failed halfway fails the copy (and the caller's transaction)
    finally:
        if not producer.done():
            producer.cancel()
            await asyncio.wait([producer])  # ends it without swallowing a cancellation of our own
    return int(status.split()[-1])
