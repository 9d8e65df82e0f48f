"""An account's export against the real Postgres: every event of the account once, in
SequenceNumber order per stream type, upcast to today's shape, nothing of another account, and
nothing committed after the export started."""

from __future__ import annotations

import json
import uuid
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from commands.erp_model.customer import CUSTOMER
from commands.store.event_store import EventStore, PendingEvent, StreamWrite
from commands.store.export import export_events, export_line, plan_export
from tests.conftest import make_account
from tests.integration.test_event_store import metadata
from tests.integration.test_upcasting import order_placed, order_placed_v2, place

pytestmark = pytest.mark.timeout(60)


async def open_customer(store: EventStore, pool: asyncpg.Pool[Any], account_id: UUID, name: str) -> None:
    customer_id = uuid.uuid4()
    event = PendingEvent("CustomerOpened", {"CustomerId": str(customer_id), "Name": name})
    write = StreamWrite(CUSTOMER.stream_id(customer_id), CUSTOMER.stream_type, 0, [event])
    await store.append(pool, account_id, [write], metadata())


async def exported(pool: asyncpg.Pool[Any], store: EventStore, account_id: UUID, chunk: int) -> list[Any]:
    plan = await plan_export(pool, account_id)
    lines = [
        json.loads(export_line(event))
        async for events in export_events(pool, store.feed, plan, chunk)
        for event in events
    ]
    assert len(lines) == plan.events
    return lines


async def test_an_export_holds_each_event_of_the_account_once_upcast_in_order(
    pool: asyncpg.Pool[Any],
) -> None:
    account_id, other = await make_account(pool), await make_account(pool)
    old = EventStore()  # before OrderPlaced's change: it named its customer `Customer`
    for n in range(12):
        await place(old, pool, account_id, order_placed(uuid.uuid4(), "Customer", f"Old {n}"))
    for n in range(3):
        await open_customer(old, pool, account_id, f"Customer {n}")
    await place(old, pool, other, order_placed(uuid.uuid4(), "Customer", "Not this account"))
    new = EventStore(order_placed_v2())
    await place(new, pool, account_id, order_placed(uuid.uuid4(), "CustomerName", "New"))

    lines = await exported(pool, new, account_id, chunk=5)  # several chunks per stream type

    assert {line["AccountId"] for line in lines} == {str(account_id)}
    assert [line["StreamType"] for line in lines] == ["Customer"] * 3 + ["Order"] * 13
    for stream_type in ("Customer", "Order"):
        numbers = [line["SequenceNumber"] for line in lines if line["StreamType"] == stream_type]
        assert numbers == list(range(1, len(numbers) + 1))
    orders = [line for line in lines if line["Name"] == "OrderPlaced"]
    assert all("Customer" not in o["Payload"] for o in orders)  # upcast, as every reader sees it
    assert [o["Payload"]["CustomerName"] for o in orders] == [f"Old {n}" for n in range(12)] + ["New"]
    assert all(set(line) >= {"StreamId", "StreamRevision", "CommitTime", "CommandId"} for line in lines)


async def test_an_export_holds_what_was_committed_when_it_started(pool: asyncpg.Pool[Any]) -> None:
    account_id = await make_account(pool)
    store = EventStore()
    for n in range(4):
        await place(store, pool, account_id, order_placed(uuid.uuid4(), "CustomerName", f"Before {n}"))
    plan = await plan_export(pool, account_id)
    reading = export_events(pool, store.feed, plan, 2)
    first = await anext(reading)
    await place(store, pool, account_id, order_placed(uuid.uuid4(), "CustomerName", "After"))
    rest = [event async for events in reading for event in events]
    assert [e.payload["CustomerName"] for e in first + rest] == [f"Before {n}" for n in range(4)]


async def test_an_account_without_events_exports_nothing(pool: asyncpg.Pool[Any]) -> None:
    account_id = await make_account(pool)
    assert await exported(pool, EventStore(), account_id, chunk=5) == []
