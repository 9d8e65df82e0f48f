"""Placing an account reads a count per database that triggers keep (migration 0012), not a count of
every account: the counts stay equal to the catalog through inserts, COPYs, moves and deletes."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg


async def kept(pool: asyncpg.Pool[Any]) -> dict[str, int]:
    rows = await pool.fetch("SELECT database, accounts FROM account_counts WHERE accounts > 0")
    return {r["database"]: r["accounts"] for r in rows}


async def counted(pool: asyncpg.Pool[Any]) -> dict[str, int]:
    rows = await pool.fetch("SELECT database, count(*) AS n FROM accounts GROUP BY database")
    return {r["database"]: r["n"] for r in rows}


async def test_the_kept_counts_follow_every_change_to_the_catalog(own_pool: asyncpg.Pool[Any]) -> None:
    pool = own_pool
    insert = "INSERT INTO accounts (account_id, name, status, database) VALUES ($1, 'A', 'Active', $2)"
    singles = [uuid.uuid4() for _ in range(5)]
    for i, account_id in enumerate(singles):
        await pool.execute(insert, account_id, "main" if i % 2 else "east")
    assert await kept(pool) == await counted(pool) == {"main": 2, "east": 3}

    async with pool.acquire() as connection:
        await connection.copy_records_to_table(
            "accounts",
            records=[(uuid.uuid4(), f"Bulk {i}", "Active", ["main", "west"][i % 2]) for i in range(1000)],
            columns=["account_id", "name", "status", "database"],
        )
    assert await kept(pool) == await counted(pool) == {"main": 502, "east": 3, "west": 500}

    await pool.execute("UPDATE accounts SET status = 'Onboarding' WHERE database = 'west'")  # moves nothing
    await pool.execute("UPDATE accounts SET database = 'east' WHERE account_id = ANY($1)", singles[:2])
    assert await kept(pool) == await counted(pool) == {"main": 501, "east": 4, "west": 500}

    await pool.execute("DELETE FROM accounts WHERE database = 'west'")
    assert await kept(pool) == await counted(pool) == {"main": 501, "east": 4}
