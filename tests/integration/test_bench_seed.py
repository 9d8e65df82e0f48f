"""The bench's bulk seeding against the real Postgres: what it writes is what appending PlaceOrders
through the store would have written, so the real store, feed, commands and projector take it as
their own, after the account's real events and gapless."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from commands.erp_model import UPCASTERS
from commands.erp_model.order import ORDER
from commands.service import CommandService
from commands.store.event_store import EventStore
from commands.store.wakeup import EVENTS_CHANNEL
from erp.bench.seed import bulk_insert_rate, seed_orders
from queries.projector import Projector
from queries.registry import PROJECTIONS
from tenancy.fences import LEAVING, AccountElsewhere, fence
from tests.conftest import make_account

pytestmark = pytest.mark.timeout(120)

SEEDED = 3_000
MONEY = re.compile(r"(0|[1-9][0-9]*)\.[0-9]{2}")


def place_order_body() -> bytes:
    return json.dumps(
        {
            "OrderId": str(uuid.uuid4()),
            "CustomerName": "Ada",
            "OrderLines": [
                {"ProductCode": "P-1", "Quantity": 3, "UnitPrice": "12.5"},
                {"ProductCode": "P-2", "Quantity": 1, "UnitPrice": "0.99"},
            ],
        }
    ).encode()


async def counter(pool: asyncpg.Pool[Any], account_id: UUID) -> asyncpg.Record:
    [row] = await pool.fetch(
        "SELECT stream_type, last_sequence, changed::text::bigint AS changed FROM stream_sequences "
        "WHERE account_id = $1",
        account_id,
    )
    return row


async def test_seeded_orders_continue_the_account_gapless_and_project_like_placed_ones(
    own_pool: asyncpg.Pool[Any],
) -> None:
    pool = own_pool
    account_id = await make_account(pool)
    store = EventStore(UPCASTERS)
    service = CommandService(pool, store)
    placed = await service.execute(account_id, service.parse("PlaceOrder", place_order_body()))
    assert placed.positions == {"Order": 1}
    projector = Projector(pool, PROJECTIONS["orders"], store.feed)
    await asyncio.wait_for(projector.catch_up(), 30)  # its next look starts after the real append
    before = await counter(pool, account_id)

    wakeups: list[str] = []
    woken = asyncio.Event()

    def wake(connection: Any, pid: int, channel: str, payload: str) -> None:
        wakeups.append(payload)
        if len(wakeups) == 3:
            woken.set()

    chunks: list[int] = []
    async with pool.acquire() as listener:
        await listener.add_listener(EVENTS_CHANNEL, wake)
        try:
            assert await seed_orders(pool, account_id, SEEDED, chunk=1_000, progress=chunks.append) == SEEDED
            await asyncio.wait_for(woken.wait(), 10)
        finally:
            await listener.remove_listener(EVENTS_CHANNEL, wake)
    assert chunks == [1_000, 2_000, 3_000]
    assert wakeups == ["Order"] * 3

    # The counter: advanced past the real event, by a later transaction (projectors look there).
    after = await counter(pool, account_id)
    assert (after["stream_type"], after["last_sequence"]) == ("Order", SEEDED + 1)
    assert after["changed"] > before["changed"]
    # SequenceNumbers 1 .. 3,001 with no gap; each event the first of its own stream.
    sequences = await pool.fetchval(
        "SELECT array_agg(sequence_number ORDER BY sequence_number) FROM events "
        "WHERE account_id = $1 AND stream_type = 'Order'",
        account_id,
    )
    assert sequences == list(range(1, SEEDED + 2))
    streams = await pool.fetchrow(
        "SELECT count(*) AS streams, count(e.stream_id) AS events, min(s.revision) AS low, "
        "max(s.revision) AS high, bool_and(s.stream_type = 'Order') AS orders "
        "FROM streams s LEFT JOIN events e ON e.account_id = s.account_id AND e.stream_id = s.stream_id "
        "WHERE s.account_id = $1",
        account_id,
    )
    assert dict(streams) == {"streams": SEEDED + 1, "events": SEEDED + 1, "low": 1, "high": 1, "orders": True}

    # Every column as the append writes it, the real event's shape.
    rows = await pool.fetch("SELECT * FROM events WHERE account_id = $1 ORDER BY sequence_number", account_id)
    real, seeded = rows[0], rows[1:]
    for row in seeded:
        assert row["payload_item_name"] == "OrderPlaced"
        assert row["stream_revision"] == 1
        assert row["schema_version"] == real["schema_version"]
        assert row["trace_context"] == {}  # what the append stores for a command with no trace
        assert row["command_id"] == row["correlation_id"] == row["causation_id"]
        assert row["commit_time"] > real["commit_time"]
        payload = row["payload"]
        assert payload.keys() == real["payload"].keys()
        assert row["stream_id"] == ORDER.stream_id(UUID(payload["OrderId"]))
        assert 1 <= len(payload["OrderLines"]) <= 4
        for line in payload["OrderLines"]:
            assert line.keys() == real["payload"]["OrderLines"][0].keys()
            assert MONEY.fullmatch(line["UnitPrice"]) and type(line["Quantity"]) is int
        lines_total = sum(
            Decimal(line["Quantity"]) * Decimal(line["UnitPrice"]) for line in payload["OrderLines"]
        )
        assert MONEY.fullmatch(payload["Total"]) and Decimal(payload["Total"]) == lines_total
    assert len({row["command_id"] for row in seeded}) == SEEDED

    # One seeded stream through the real store, and its aggregate through a real command.
    last = seeded[-1]
    [event] = await store.load(pool, account_id, last["stream_id"])
    assert (event.name, event.stream_revision, event.sequence_number) == ("OrderPlaced", 1, SEEDED + 1)
    assert event.payload == last["payload"]
    cancel = json.dumps({"OrderId": last["payload"]["OrderId"], "Reason": "seeded"}).encode()

    # The live projector finds the work from the counter's `changed`, and refuses nothing.
    await asyncio.wait_for(projector.catch_up(), 60)
    assert (
        await pool.fetchval("SELECT count(*) FROM rm_order WHERE account_id = $1", account_id) == SEEDED + 1
    )
    assert await pool.fetchval("SELECT count(*) FROM parked_events WHERE account_id = $1", account_id) == 0
    projected = await pool.fetchval(
        "SELECT sum(total) FROM rm_order WHERE account_id = $1 AND status = 'Placed'", account_id
    )
    assert projected == sum(Decimal(row["payload"]["Total"]) for row in rows)

    cancelled = await service.execute(account_id, service.parse("CancelOrder", cancel))
    assert (cancelled.revision, cancelled.positions) == (2, {"Order": SEEDED + 2})
    await asyncio.wait_for(projector.catch_up(), 30)
    status = await pool.fetchval(
        "SELECT status FROM rm_order WHERE account_id = $1 AND id = $2",
        account_id,
        UUID(last["payload"]["OrderId"]),
    )
    assert status == "Cancelled"


async def test_seeding_a_fenced_account_writes_nothing(own_pool: asyncpg.Pool[Any]) -> None:
    account_id = await make_account(own_pool)
    async with own_pool.acquire() as connection, connection.transaction():
        await fence(connection, account_id, LEAVING, "elsewhere", uuid.uuid4())
    with pytest.raises(AccountElsewhere):
        await seed_orders(own_pool, account_id, 10)
    assert await own_pool.fetchval("SELECT count(*) FROM streams WHERE account_id = $1", account_id) == 0
    assert await own_pool.fetchval("SELECT count(*) FROM stream_sequences") == 0

    # The connection went back to the pool speaking jsonb as before.
    assert await own_pool.fetchval("SELECT $1::jsonb", {"a": [1]}) == {"a": [1]}
    assert await bulk_insert_rate(own_pool, rows=500) > 0
    assert (
        await own_pool.fetchval("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'bench_bulk_insert_%'")
        == 0
    )
