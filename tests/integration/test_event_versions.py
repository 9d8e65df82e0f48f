"""Event versions declared in the model (`commands.model.versions`), on the real Postgres: an event
stored in an older shape is read in today's on every read path (loading the aggregate, the live
projector, a rebuild, an export), for a renamed field, a field added with a default, and an event
split in two.

The older shapes are stored the way older code stored them: through a store without the
declarations (every event at version 1). Today's model is the ERP's, with the Order element
declaring the history below.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from commands.erp_model import ERP
from commands.erp_model.order import ORDER
from commands.model import Added, Model, Part, Renamed, Retired
from commands.store.event_store import EventStore, PendingEvent, StreamWrite
from commands.store.export import export_events, plan_export
from commands.stream_cache import StreamCache
from commands.unit_of_work import UnitOfWork
from queries.projector import Projector, rebuild_account
from queries.registry import PROJECTIONS
from tests.integration.test_event_store import metadata

pytestmark = pytest.mark.timeout(60)

LINES = [{"ProductCode": "P-1", "Quantity": 1, "UnitPrice": "2.50"}]
NO_REASON = "no reason recorded"


def order_with_history() -> Model:
    """The ERP with Order's events versioned: OrderPlaced called its customer `Customer` in v1,
    OrderCancelled had no `Reason` in v1, and a retired OrderPlacedAndCancelled did both at once."""
    events = {decl.name: decl for decl in ORDER.events}
    placed = dataclasses.replace(events["OrderPlaced"], history=((Renamed("Customer", "CustomerName"),),))
    cancelled = dataclasses.replace(events["OrderCancelled"], history=((Added("Reason", NO_REASON),),))
    both = Retired(
        "OrderPlacedAndCancelled",
        (
            Part("OrderPlaced", {f: f for f in ("OrderId", "Customer", "OrderLines", "Total")}, version=1),
            Part("OrderCancelled", {"OrderId": "OrderId", "Reason": "Why"}, version=2),
        ),
    )
    order = dataclasses.replace(ORDER, events=(placed, cancelled), retired=(both,))
    return Model([order if e.name == "Order" else e for e in ERP.elements.values()])


async def store_old(pool: asyncpg.Pool[Any], account_id: UUID, order_id: UUID, *events: PendingEvent) -> None:
    """As code before the change stored them: no declarations, so every event at version 1."""
    await EventStore().append(
        pool,
        account_id,
        [StreamWrite(ORDER.stream_id(order_id), ORDER.stream_type, 0, list(events))],
        metadata(),
    )


def placed_v1(order_id: UUID, customer: str) -> PendingEvent:
    payload = {"OrderId": str(order_id), "Customer": customer, "OrderLines": LINES, "Total": "2.50"}
    return PendingEvent("OrderPlaced", payload)


async def read_model(pool: asyncpg.Pool[Any], account_id: UUID, order_id: UUID) -> tuple[Any, ...]:
    row = await pool.fetchrow(
        "SELECT customer_name, status, cancel_reason FROM rm_order WHERE account_id = $1 AND id = $2",
        account_id,
        order_id,
    )
    assert row is not None, "not projected"
    return tuple(row)


@pytest.fixture
def model() -> Model:
    return order_with_history()


async def old_orders(pool: asyncpg.Pool[Any], account_id: UUID) -> dict[str, UUID]:
    """Three orders stored in their old shapes: renamed, cancelled without a reason, and split."""
    renamed, no_reason, split = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await store_old(pool, account_id, renamed, placed_v1(renamed, "Ada"))
    await store_old(
        pool,
        account_id,
        no_reason,
        placed_v1(no_reason, "Bo"),
        PendingEvent("OrderCancelled", {"OrderId": str(no_reason)}),
    )
    both = {"OrderId": str(split), "Customer": "Cy", "OrderLines": LINES, "Total": "2.50", "Why": "too late"}
    await store_old(pool, account_id, split, PendingEvent("OrderPlacedAndCancelled", both))
    return {"renamed": renamed, "no_reason": no_reason, "split": split}


EXPECTED = {
    "renamed": ("Ada", "Placed", None),
    "no_reason": ("Bo", "Cancelled", NO_REASON),
    "split": ("Cy", "Cancelled", "too late"),
}


async def test_the_model_declares_todays_versions(model: Model) -> None:
    assert model.upcasters.version("OrderPlaced") == 2
    assert model.upcasters.version("OrderCancelled") == 2
    assert ERP.upcasters.version("OrderPlaced") == 1, "the ERP itself has changed no event yet"


async def test_older_shapes_load_into_the_aggregate_as_today(
    pool: asyncpg.Pool[Any], account_id: UUID, model: Model
) -> None:
    orders = await old_orders(pool, account_id)
    store = EventStore(model.upcasters)
    for key, order_id in orders.items():
        uow = UnitOfWork(pool, account_id, store, StreamCache())
        order = await uow.get(model.aggregates["Order"], ORDER.stream_id(order_id))
        customer, status, reason = EXPECTED[key]
        assert (order.state["CustomerName"], order.status, order.state.get("CancelReason")) == (
            customer,
            status,
            reason,
        )
    split = await store.load(pool, account_id, ORDER.stream_id(orders["split"]))
    assert [(e.name, e.stream_revision) for e in split] == [("OrderPlaced", 1), ("OrderCancelled", 1)]
    assert split[0].sequence_number == split[1].sequence_number, "two events of one stored row"


async def test_older_shapes_project_and_rebuild_as_today(
    pool: asyncpg.Pool[Any], account_id: UUID, model: Model
) -> None:
    orders = await old_orders(pool, account_id)
    projector = Projector(pool, PROJECTIONS["orders"], EventStore(model.upcasters).feed)
    await projector.catch_up(account_id)
    for key, order_id in orders.items():
        assert await read_model(pool, account_id, order_id) == EXPECTED[key], key
    assert (await projector.lag(account_id)).events_behind == 0

    rebuilt = await rebuild_account(projector, account_id)
    assert rebuilt.events == 4, "SequenceNumbers count stored events: the split one once"
    for key, order_id in orders.items():
        assert await read_model(pool, account_id, order_id) == EXPECTED[key], key
    parked = await pool.fetchval("SELECT count(*) FROM parked_events WHERE account_id = $1", account_id)
    assert parked == 0


async def test_older_shapes_are_exported_as_today(
    pool: asyncpg.Pool[Any], account_id: UUID, model: Model
) -> None:
    orders = await old_orders(pool, account_id)
    feed = EventStore(model.upcasters).feed
    exported = [
        e async for chunk in export_events(pool, feed, await plan_export(pool, account_id)) for e in chunk
    ]
    by_order = {(UUID(e.payload["OrderId"]), e.name): e.payload for e in exported}
    assert by_order[(orders["renamed"], "OrderPlaced")]["CustomerName"] == "Ada"
    assert by_order[(orders["no_reason"], "OrderCancelled")]["Reason"] == NO_REASON
    assert by_order[(orders["split"], "OrderCancelled")] == {
        "OrderId": str(orders["split"]),
        "Reason": "too late",
    }
    assert "Customer" not in by_order[(orders["split"], "OrderPlaced")]


async def test_new_events_are_stored_at_todays_version_and_read_unchanged(
    pool: asyncpg.Pool[Any], account_id: UUID, model: Model
) -> None:
    store = EventStore(model.upcasters)
    order_id = uuid.uuid4()
    payload = {"OrderId": str(order_id), "CustomerName": "Di", "OrderLines": LINES, "Total": "2.50"}
    stream = ORDER.stream_id(order_id)
    await store.append(
        pool,
        account_id,
        [StreamWrite(stream, "Order", 0, [PendingEvent("OrderPlaced", payload)])],
        metadata(),
    )
    version = await pool.fetchval(
        "SELECT schema_version FROM events WHERE account_id = $1 AND stream_id = $2", account_id, stream
    )
    assert version == 2
    [loaded] = await store.load(pool, account_id, stream)
    assert loaded.payload == payload


def test_a_retired_event_must_be_read_as_events_of_its_element() -> None:
    wrong = dataclasses.replace(ORDER, retired=(Retired("Gone", (Part("InvoiceCreated"),)),))
    with pytest.raises(ValueError, match="not one of its events"):
        Model([wrong])
    too_new = dataclasses.replace(ORDER, retired=(Retired("Gone", (Part("OrderPlaced", version=3),)),))
    with pytest.raises(ValueError, match="has no version 3"):
        Model([too_new])
