"""Routing: accounts are placed across tenant databases; each account's data lives only in its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import httpx
import pytest

from core.settings import Settings
from erp.app import create_app
from erp.devserver import drop_database, free_port
from erp.worker import run_worker
from tenancy.routing import event_partition
from tests.conftest import OPERATOR_TOKEN, fresh_database, onboard, serve


@pytest.fixture(scope="module")
async def second_database() -> AsyncIterator[str]:
    url = await fresh_database()
    yield url
    await drop_database(url)


@pytest.fixture(scope="module")
async def routed(settings: Settings, second_database: str, worker: None) -> AsyncIterator[httpx.AsyncClient]:
    """An API and a worker that know two tenant databases: `main` and `second`."""
    routed_settings = replace(
        settings,
        extra_databases=f"second={second_database}",
        task_queue=f"erp-routing-{uuid.uuid4().hex[:6]}",
        http_port=free_port(),
    )
    stop = asyncio.Event()
    worker_task = asyncio.create_task(run_worker(routed_settings, stop))
    server, server_task = await serve(create_app(routed_settings), routed_settings.http_port)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{routed_settings.http_port}", timeout=30
    ) as client:
        yield client
    server.should_exit = True
    await server_task
    stop.set()
    await asyncio.wait_for(worker_task, 30)


async def test_an_account_in_the_second_database_works_end_to_end(
    routed: httpx.AsyncClient, pool: asyncpg.Pool[Any], second_database: str
) -> None:
    tenants = [await onboard(routed, f"Routed {i}") for i in range(3)]
    placed_in = [
        await pool.fetchval("SELECT database FROM accounts WHERE account_id = $1", t.account_id)
        for t in tenants
    ]
    # New accounts go to the least-used database; `second` starts empty, so it gets some.
    assert "second" in placed_in
    tenant = tenants[placed_in.index("second")]
    other = tenants[(placed_in.index("second") + 1) % len(tenants)]

    order_id = str(uuid.uuid4())
    placed = await routed.post(
        "/commands/PlaceOrder",
        headers=tenant.headers,
        json={
            "OrderId": order_id,
            "CustomerName": "Routed Customer",
            "OrderLines": [{"ProductCode": "P", "Quantity": 3, "UnitPrice": "2.00"}],
        },
    )
    assert placed.status_code == 200, placed.text
    read = await routed.get(
        "/queries/GetOrders",
        params={"CustomerName": "Routed Customer", "ConsistentWith": placed.json()["ConsistencyToken"]},
        headers=tenant.headers,
    )
    assert read.status_code == 200, read.text
    assert [item["OrderId"] for item in read.json()["Items"]] == [order_id]

    second = await asyncpg.connect(second_database)
    try:
        assert (
            await second.fetchval("SELECT count(*) FROM events WHERE account_id = $1", tenant.account_id) == 1
        )
        # In the one partition (of a fixed number) its AccountId chooses, in its own database.
        parts = await second.fetch(
            "SELECT DISTINCT tableoid::regclass::text FROM events WHERE account_id = $1", tenant.account_id
        )
        assert [row[0] for row in parts] == [await event_partition(second, tenant.account_id)]
    finally:
        await second.close()
    assert await pool.fetchval("SELECT count(*) FROM events WHERE account_id = $1", tenant.account_id) == 0
    assert await pool.fetchval("SELECT count(*) FROM streams WHERE account_id = $1", tenant.account_id) == 0

    foreign = await routed.get(
        "/queries/GetOrders", params={"CustomerName": "Routed Customer"}, headers=other.headers
    )
    assert foreign.json()["Items"] == []


async def test_projections_are_listed_and_rebuilt_per_database(routed: httpx.AsyncClient) -> None:
    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    tenant = await onboard(routed, "Routed rebuild")
    order_id = str(uuid.uuid4())
    placed = await routed.post(
        "/commands/PlaceOrder",
        headers=tenant.headers,
        json={
            "OrderId": order_id,
            "CustomerName": "Rebuilt",
            "OrderLines": [{"ProductCode": "P", "Quantity": 1, "UnitPrice": "1.00"}],
        },
    )
    token = placed.json()["ConsistencyToken"]
    listing = await routed.get("/projections", headers=operator)
    assert listing.status_code == 200
    assert {("orders", "main"), ("orders", "second")} <= {(p["Name"], p["Database"]) for p in listing.json()}

    started = await routed.post(
        "/projections/orders/rebuild", json={"AccountId": str(tenant.account_id)}, headers=operator
    )
    assert started.status_code == 202, started.text
    for _ in range(100):
        read = await routed.get(
            "/queries/GetOrders",
            params={"CustomerName": "Rebuilt", "ConsistentWith": token, "Timeout": "5"},
            headers=tenant.headers,
        )
        if read.status_code == 200 and read.json()["Items"]:
            break
        await asyncio.sleep(0.1)
    assert [item["OrderId"] for item in read.json()["Items"]] == [order_id]
