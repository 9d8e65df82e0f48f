"""Fault: kill -9 the worker while commands flow; the projection resumes where it committed."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from commands.service import CommandService
from commands.store.event_store import EventStore
from core.db import create_pool
from core.settings import Settings
from erp.devserver import drop_database
from tests.conftest import fresh_database, make_account, start_worker

pytestmark = pytest.mark.fault


@pytest.fixture(scope="module")
async def crash_settings(module_temporal: str) -> AsyncIterator[Settings]:
    url = await fresh_database()
    yield Settings(database_url=url, temporal_address=module_temporal, task_queue="erp-crash")
    await drop_database(url)


async def projected(pool: asyncpg.Pool[Any]) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM rm_order"))


async def test_killed_worker_resumes_from_its_checkpoint(crash_settings: Settings) -> None:
    pool = await create_pool(crash_settings, min_size=2, max_size=10)
    service = CommandService(pool, EventStore())
    accounts = [await make_account(pool) for _ in range(4)]
    placed = 0

    async def place(count: int) -> None:
        nonlocal placed
        for i in range(count):
            body = json.dumps(
                {
                    "OrderId": str(uuid.uuid4()),
                    "CustomerName": "Grace",
                    "OrderLines": [{"ProductCode": "P", "Quantity": 1, "UnitPrice": "1.00"}],
                }
            ).encode()
            account = accounts[i % len(accounts)]
            await service.execute(account, service.parse("PlaceOrder", body))
            placed += 1

    worker = start_worker(crash_settings)
    try:
        await place(50)
        deadline = time.monotonic() + 60
        while await projected(pool) == 0:
            assert time.monotonic() < deadline, "the first worker never projected anything"
            await asyncio.sleep(0.1)
        # Kill it hard while commands keep flowing.
        flow = asyncio.create_task(place(400))
        await asyncio.sleep(0.2)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        await flow
        stalled_at = await projected(pool)
        worker = start_worker(crash_settings)
        deadline = time.monotonic() + 90
        while await projected(pool) < placed:
            assert time.monotonic() < deadline, (
                f"projection stuck at {await projected(pool)} of {placed} (was {stalled_at} at kill)"
            )
            await asyncio.sleep(0.2)
        assert await projected(pool) == placed == 450
        distinct = await pool.fetchval("SELECT count(DISTINCT order_id) FROM rm_order")
        assert distinct == placed
        head = await pool.fetchval("SELECT sum(last_sequence) FROM stream_sequences")
        position = await pool.fetchval(
            "SELECT sum(position) FROM projection_checkpoints WHERE projection = 'orders'"
        )
        assert head == position == placed
    finally:
        worker.kill()
        worker.wait(timeout=10)
        await pool.close()
