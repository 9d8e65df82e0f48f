"""The projector engine against real Postgres and Redis: exactly once, in any commit order."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from typing import Any
from uuid import UUID

import asyncpg
import redis.asyncio as redis

from commands.event_store import CommandMetadata, EventStore, PendingEvent, StreamWrite
from commands.service import CommandService
from erp.settings import Settings
from queries.notifications import Notifier, channel_for
from queries.projector import Projector
from queries.registry import PROJECTIONS
from tenancy.rls import tenant_transaction
from tests.conftest import make_account


def place_order_body(customer: str = "Ada") -> bytes:
    return json.dumps(
        {
            "OrderId": str(uuid.uuid4()),
            "CustomerName": customer,
            "OrderLines": [{"ProductCode": "P", "Quantity": 1, "UnitPrice": "2.50"}],
        }
    ).encode()


async def place_orders_with_random_commit_delays(
    pool: asyncpg.Pool[Any], account_id: UUID, writers: int, per_writer: int
) -> int:
    """Append OrderPlaced events from many writers, each sleeping 0-5 ms inside its transaction."""
    store = EventStore()

    async def writer() -> int:
        done = 0
        for _ in range(per_writer):
            order_id = uuid.uuid4()
            async with tenant_transaction(pool, account_id) as connection:
                await store.append(
                    connection,
                    account_id,
                    [
                        StreamWrite(
                            f"Order-{order_id}",
                            "Order",
                            0,
                            [
                                PendingEvent(
                                    "OrderPlaced",
                                    {
                                        "OrderId": str(order_id),
                                        "CustomerName": "Ada",
                                        "OrderLines": [],
                                        "Total": "1.00",
                                    },
                                )
                            ],
                        )
                    ],
                    CommandMetadata(order_id, order_id, order_id),
                )
                await asyncio.sleep(random.uniform(0, 0.005))
            done += 1
        return done

    return sum(await asyncio.gather(*(writer() for _ in range(writers))))


async def order_count(pool: asyncpg.Pool[Any], account_id: UUID) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM rm_order WHERE account_id = $1", account_id))


async def test_two_projectors_racing_writers_apply_every_event_exactly_once(
    pool: asyncpg.Pool[Any],
) -> None:
    """Invariant 2 end to end: with out-of-order commits and two projectors at once (a live one and
    a zombie), the read model ends with exactly one row per order; a double apply would also fail
    on the read model's primary key."""
    accounts = [await make_account(pool) for _ in range(3)]
    live = Projector(pool, PROJECTIONS["orders"], batch_size=7, pairs_per_batch=2)
    zombie = Projector(pool, PROJECTIONS["orders"], batch_size=5, pairs_per_batch=3)
    stop = asyncio.Event()

    async def follow(projector: Projector) -> None:
        while not stop.is_set():
            if not await projector.run_batch():
                await asyncio.sleep(0.001)

    followers = [asyncio.create_task(follow(live)), asyncio.create_task(follow(zombie))]
    written = await asyncio.gather(
        *(place_orders_with_random_commit_delays(pool, a, writers=8, per_writer=15) for a in accounts)
    )
    await live.catch_up()
    stop.set()
    await asyncio.gather(*followers)

    for account_id, count in zip(accounts, written, strict=True):
        assert await order_count(pool, account_id) == count == 120
        lag = await live.lag(account_id)
        assert lag.position == lag.head == count


async def test_reset_and_replay_rebuilds_an_identical_read_model(pool: asyncpg.Pool[Any]) -> None:
    account_id = await make_account(pool)
    service = CommandService(pool)
    for i in range(20):
        await service.execute(account_id, service.parse("PlaceOrder", place_order_body(f"C{i % 3}")))
    projector = Projector(pool, PROJECTIONS["orders"], batch_size=6)
    await projector.catch_up()
    query = (
        "SELECT order_id, customer_name, status, total, order_lines FROM rm_order "
        "WHERE account_id = $1 ORDER BY order_id"
    )
    before = [dict(r) for r in await pool.fetch(query, account_id)]
    assert len(before) == 20

    await projector.reset(account_id)
    assert await order_count(pool, account_id) == 0
    assert (await projector.lag(account_id)).position == 0
    await projector.catch_up(account_id)
    assert [dict(r) for r in await pool.fetch(query, account_id)] == before


async def test_resetting_one_account_leaves_the_others_alone(pool: asyncpg.Pool[Any]) -> None:
    a, b = await make_account(pool), await make_account(pool)
    service = CommandService(pool)
    for account_id in (a, b):
        await service.execute(account_id, service.parse("PlaceOrder", place_order_body()))
    projector = Projector(pool, PROJECTIONS["orders"])
    await projector.catch_up()
    await projector.reset(a)
    assert await order_count(pool, a) == 0
    assert await order_count(pool, b) == 1


async def test_a_committed_batch_is_announced_on_the_accounts_channel(
    pool: asyncpg.Pool[Any], settings: Settings
) -> None:
    account_id = await make_account(pool)
    client = redis.from_url(settings.redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel_for(account_id))
    try:
        service = CommandService(pool)
        result = await service.execute(account_id, service.parse("PlaceOrder", place_order_body()))
        await Projector(pool, PROJECTIONS["orders"], Notifier(client)).catch_up(account_id)
        message = None
        for _ in range(50):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                break
        assert message is not None
        assert json.loads(message["data"]) == {
            "Projection": "orders",
            "StreamType": "Order",
            "Position": result.positions["Order"],
        }
    finally:
        await pubsub.aclose()
        await client.aclose()


async def test_notifications_wait_while_redis_is_unreachable(pool: asyncpg.Pool[Any]) -> None:
    """A batch commits even when Redis is down; its notification is kept for later."""
    account_id = await make_account(pool)
    service = CommandService(pool)
    await service.execute(account_id, service.parse("PlaceOrder", place_order_body()))
    unreachable = redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    notifier = Notifier(unreachable)
    await Projector(pool, PROJECTIONS["orders"], notifier).catch_up(account_id)
    assert await order_count(pool, account_id) == 1
    assert notifier._pending  # kept, to publish once Redis answers
    await unreachable.aclose()


async def test_an_event_the_read_model_cannot_hold_is_parked_not_blocking(pool: asyncpg.Pool[Any]) -> None:
    """A value out of the column's range fails in the database; the rest of the batch still applies."""
    account_id = await make_account(pool)
    store = EventStore()
    good, bad = uuid.uuid4(), uuid.uuid4()
    for order_id, total in ((bad, "100000000000000000000.00"), (good, "3.00")):
        payload = {"OrderId": str(order_id), "CustomerName": "Park", "OrderLines": [], "Total": total}
        await store.append(
            pool,
            account_id,
            [StreamWrite(f"Order-{order_id}", "Order", 0, [PendingEvent("OrderPlaced", payload)])],
            CommandMetadata(order_id, order_id, order_id),
        )
    projector = Projector(pool, PROJECTIONS["orders"])
    await projector.catch_up(account_id)
    assert await pool.fetchval(
        "SELECT count(*) FROM rm_order WHERE account_id = $1 AND id = $2", account_id, good
    )
    parked = await pool.fetch("SELECT stream_id, reason FROM parked_events WHERE account_id = $1", account_id)
    assert [r["stream_id"] for r in parked] == [f"Order-{bad}"]
    assert "NumericValueOutOfRange" in parked[0]["reason"]
    assert (await projector.lag(account_id)).events_behind == 0
