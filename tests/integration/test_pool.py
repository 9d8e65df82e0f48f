"""Database work that must not be abandoned halfway: finish_before_cancelling.

Temporal cancels a projector activity whose heartbeat stops (a paused or starved worker), and
the cancellation lands wherever the batch is. asyncpg cannot cancel an executemany halfway
through its pipeline: the connection waits forever for the rest, its transaction open, so the
checkpoints the batch claimed stay locked and every later batch skips those accounts (`erp
bench` caught a projection stalled this way). A projector batch therefore finishes first.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from core.db import create_pool, finish_before_cancelling
from core.settings import Settings

ROWS = 100_000


async def test_a_cancelled_batch_finishes_and_releases_its_locks(
    settings: Settings, pool: asyncpg.Pool[Any]
) -> None:
    await pool.execute("CREATE TABLE pool_probe (id int PRIMARY KEY)")
    await pool.execute("INSERT INTO pool_probe VALUES (0)")
    own = await create_pool(settings, min_size=1, max_size=1)
    locked = asyncio.Event()

    async def batch() -> None:
        async with own.acquire() as connection, connection.transaction():
            await connection.execute("SELECT * FROM pool_probe WHERE id = 0 FOR UPDATE")
            locked.set()
            # The projection applies its runs of statements this way.
            await connection.executemany("INSERT INTO pool_probe VALUES ($1)", [(n,) for n in range(1, ROWS)])

    try:
        task = asyncio.create_task(finish_before_cancelling(batch()))
        await locked.wait()
        await asyncio.sleep(0.2)  # mid-pipeline
        task.cancel()
        results = await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 60)
        assert isinstance(results[0], asyncio.CancelledError)
        # The batch went in whole, and its lock is free.
        assert await pool.fetchval("SELECT count(*) FROM pool_probe") == ROWS
        async with pool.acquire() as other, other.transaction():
            await other.execute("SET LOCAL lock_timeout = '2s'")
            await other.execute("SELECT * FROM pool_probe WHERE id = 0 FOR UPDATE")
        assert await own.fetchval("SELECT 1") == 1
    finally:
        await own.close()
        await pool.execute("DROP TABLE pool_probe")
