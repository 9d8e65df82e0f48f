"""The projector engine against real Postgres and Redis: exactly once, in any commit order."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import uuid
from typing import Any
from uuid import UUID

import asyncpg
import redis.asyncio as redis
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from commands.service import CommandService
from commands.store.event_store import CommandMetadata, EventStore, PendingEvent, StreamWrite
from commands.store.feed import EventFeed
from core.settings import Settings
from queries.notifications import Notifier, channel_for
from queries.projector import Projector, Rebuilt, rebuild_account
from queries.registry import PROJECTIONS
from tenancy.rls import tenant_transaction
from tests.conftest import make_account, metric_points


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
    live = Projector(pool, PROJECTIONS["orders"], EventFeed(), batch_size=7, pairs_per_batch=2)
    zombie = Projector(pool, PROJECTIONS["orders"], EventFeed(), batch_size=5, pairs_per_batch=3)
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


ORDERS = (
    "SELECT order_id, customer_name, status, total, order_lines FROM rm_order "
    "WHERE account_id = $1 ORDER BY order_id"
)


async def rows_of(pool: asyncpg.Pool[Any], account_id: UUID) -> list[dict[str, Any]]:
    return [dict(r) for r in await pool.fetch(ORDERS, account_id)]


async def projected_orders(pool: asyncpg.Pool[Any], count: int) -> tuple[UUID, Projector]:
    """An account with `count` orders in its read model, and a projector of small batches."""
    account_id = await make_account(pool)
    service = CommandService(pool, EventStore())
    for i in range(count):
        await service.execute(account_id, service.parse("PlaceOrder", place_order_body(f"C{i % 3}")))
    projector = Projector(pool, PROJECTIONS["orders"], EventFeed(), batch_size=5, pairs_per_batch=1)
    await projector.catch_up(account_id)
    return account_id, projector


async def test_readers_see_the_old_read_model_until_the_rebuild_commits(pool: asyncpg.Pool[Any]) -> None:
    account_id, projector = await projected_orders(pool, 150)
    before = await rows_of(pool, account_id)
    assert len(before) == 150
    applied: list[int] = []
    seen_mid_rebuild: list[int] = []
    rebuilding = asyncio.create_task(rebuild_account(projector, account_id, applied.append))
    while not rebuilding.done():
        rows = await rows_of(pool, account_id)
        assert rows == before, f"a reader saw {len(rows)} of 150 orders during the rebuild"
        if applied and applied[-1] < 150:
            seen_mid_rebuild.append(applied[-1])
    rebuilt = await rebuilding
    assert seen_mid_rebuild, "no read happened while the rebuild was half done"
    assert (rebuilt.batches, rebuilt.events) == (30, 150)
    assert applied == sorted(applied) and applied[-1] == 150
    assert await rows_of(pool, account_id) == before
    lag = await projector.lag(account_id)
    assert lag.position == lag.head == 150


async def test_a_cancelled_rebuild_changes_nothing_and_holds_no_locks(pool: asyncpg.Pool[Any]) -> None:
    account_id, projector = await projected_orders(pool, 100)
    before = await rows_of(pool, account_id)
    # Lose a row behind the projector's back: a rebuild that does not finish must not bring it back.
    await pool.execute("DELETE FROM rm_order WHERE order_id = $1", before[0]["order_id"])
    damaged = await rows_of(pool, account_id)
    half_way = asyncio.Event()

    def applied(events: int) -> None:
        if events >= 50:
            half_way.set()

    rebuilding = asyncio.create_task(rebuild_account(projector, account_id, applied))
    await half_way.wait()
    rebuilding.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await rebuilding
    assert await rows_of(pool, account_id) == damaged
    assert (await projector.lag(account_id)).position == 100

    # The checkpoints are free: the live projector moves on, and a rebuild that finishes repairs.
    service = CommandService(pool, EventStore())
    await service.execute(account_id, service.parse("PlaceOrder", place_order_body()))
    assert await asyncio.wait_for(projector.catch_up(account_id), 10) == 1
    assert len(await rows_of(pool, account_id)) == 100
    await rebuild_account(projector, account_id)
    assert len(await rows_of(pool, account_id)) == 101


async def test_writers_and_the_live_projector_carry_on_during_a_rebuild(pool: asyncpg.Pool[Any]) -> None:
    account_id, projector = await projected_orders(pool, 60)
    live = Projector(pool, PROJECTIONS["orders"], EventFeed())
    rebuilding = asyncio.create_task(rebuild_account(projector, account_id))
    written = await place_orders_with_random_commit_delays(pool, account_id, writers=4, per_writer=10)
    await live.catch_up(account_id)
    await rebuilding
    await live.catch_up(account_id)
    assert written == 40
    assert await order_count(pool, account_id) == 100
    lag = await live.lag(account_id)
    assert lag.position == lag.head == 100


async def test_a_rebuild_does_not_count_old_events_as_projection_delay(
    pool: asyncpg.Pool[Any], metric_reader: InMemoryMetricReader
) -> None:
    def delays() -> int:
        found = metric_points(metric_reader).get("erp.projection.delay", [])
        return sum(p.count for p in found if p.attributes["projection"] == "orders")

    account_id, projector = await projected_orders(pool, 150)
    before = delays()
    await rebuild_account(projector, account_id)
    # (A worker left running by another test may record a few live delays meanwhile.)
    assert delays() - before < 150


async def test_rebuilding_one_account_leaves_the_others_alone(pool: asyncpg.Pool[Any]) -> None:
    a, b = await make_account(pool), await make_account(pool)
    service = CommandService(pool, EventStore())
    for account_id in (a, b):
        await service.execute(account_id, service.parse("PlaceOrder", place_order_body()))
    projector = Projector(pool, PROJECTIONS["orders"], EventFeed())
    await projector.catch_up()
    await pool.execute("DELETE FROM rm_order WHERE account_id = ANY($1)", [a, b])
    assert await rebuild_account(projector, a) == Rebuilt(1, 1)
    assert await order_count(pool, a) == 1
    assert await order_count(pool, b) == 0
    assert {a, b} <= set(await projector.accounts())


async def test_a_committed_batch_is_announced_on_the_accounts_channel(
    pool: asyncpg.Pool[Any], settings: Settings
) -> None:
    account_id = await make_account(pool)
    client = redis.from_url(settings.redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel_for(account_id))
    try:
        service = CommandService(pool, EventStore())
        result = await service.execute(account_id, service.parse("PlaceOrder", place_order_body()))
        await Projector(pool, PROJECTIONS["orders"], EventFeed(), Notifier(client)).catch_up(account_id)
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
    service = CommandService(pool, EventStore())
    await service.execute(account_id, service.parse("PlaceOrder", place_order_body()))
    unreachable = redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    notifier = Notifier(unreachable)
    await Projector(pool, PROJECTIONS["orders"], EventFeed(), notifier).catch_up(account_id)
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
    projector = Projector(pool, PROJECTIONS["orders"], EventFeed())
    await projector.catch_up(account_id)
    assert await pool.fetchval(
        "SELECT count(*) FROM rm_order WHERE account_id = $1 AND id = $2", account_id, good
    )
    parked = await pool.fetch("SELECT stream_id, reason FROM parked_events WHERE account_id = $1", account_id)
    assert [r["stream_id"] for r in parked] == [f"Order-{bad}"]
    assert "NumericValueOutOfRange" in parked[0]["reason"]
    assert (await projector.lag(account_id)).events_behind == 0
