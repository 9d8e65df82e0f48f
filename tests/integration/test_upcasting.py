"""An event whose shape changed, against the real Postgres: events stored in the old shape load,
replay and project in the new one, and events stored after the change are at the new schema
version, so no step applies to them again."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from commands.erp_model import ERP
from commands.erp_model.order import ORDER
from commands.store.event_store import EventStore, PendingEvent, StreamWrite
from commands.store.upcasting import Upcasters
from queries.projector import Projector
from queries.projector.rebuild import rebuild_account
from queries.registry import PROJECTIONS
from tests.integration.test_event_store import metadata, stored

pytestmark = pytest.mark.timeout(60)

LINES = [{"ProductCode": "P-1", "Quantity": 1, "UnitPrice": "2.50"}]


def customer_renamed(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """OrderPlaced v1 -> v2: the field `Customer` became `CustomerName`.

    A payload already in the new shape has no `Customer`: applying this step to it fails loudly.
    """
    new = {key: value for key, value in payload.items() if key != "Customer"}
    new["CustomerName"] = payload["Customer"]
    return "OrderPlaced", new


def order_placed_v2() -> Upcasters:
    upcasters = Upcasters()
    upcasters.register("OrderPlaced", 1, customer_renamed)
    return upcasters


def order_placed(order_id: UUID, customer_field: str, customer: str) -> PendingEvent:
    return PendingEvent(
        "OrderPlaced",
        {"OrderId": str(order_id), customer_field: customer, "OrderLines": LINES, "Total": "2.50"},
    )


async def place(store: EventStore, pool: asyncpg.Pool[Any], account_id: UUID, event: PendingEvent) -> str:
    stream_id = ORDER.stream_id(UUID(event.payload["OrderId"]))
    await store.append(pool, account_id, [StreamWrite(stream_id, ORDER.stream_type, 0, [event])], metadata())
    return stream_id


async def projected(pool: asyncpg.Pool[Any], account_id: UUID, order_id: UUID) -> asyncpg.Record:
    row: asyncpg.Record = await pool.fetchrow(
        "SELECT customer_name, status, total FROM rm_order WHERE account_id = $1 AND id = $2",
        account_id,
        order_id,
    )
    return row


async def test_an_order_placed_in_its_old_shape_loads_replays_and_projects_in_the_new_one(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    # Before the change: no upcasters, and OrderPlaced named its customer `Customer`.
    old_id = uuid.uuid4()
    old_stream = await place(EventStore(), pool, account_id, order_placed(old_id, "Customer", "Ada"))
    [row] = await stored(pool, account_id, old_stream)
    assert row["schema_version"] == 1
    assert row["payload"]["Customer"] == "Ada" and "CustomerName" not in row["payload"]

    # After it: the upcaster turns v1 into v2 for every reader.
    store = EventStore(order_placed_v2())
    assert store.feed.upcasters.version("OrderPlaced") == 2

    # (a) loading the stream gives the new shape.
    [loaded] = await store.load(pool, account_id, old_stream)
    assert loaded.name == "OrderPlaced"
    assert loaded.payload == {
        "OrderId": str(old_id),
        "CustomerName": "Ada",
        "OrderLines": LINES,
        "Total": "2.50",
    }

    # (b) the Order aggregate replays it.
    order = ERP.aggregates["Order"](old_stream)
    order.replay([loaded])
    assert order.revision == 1
    assert order.status == "Placed"
    assert order.state["CustomerName"] == "Ada"

    # (c) the projector, reading through the store's feed, projects it in the new shape. Replayed
    # (a rebuild holds the account's checkpoints): a worker another test left running on this
    # database may have projected it first, through a feed without this test's upcaster.
    projector = Projector(pool, PROJECTIONS["orders"], store.feed)
    await rebuild_account(projector, account_id)
    old = await projected(pool, account_id, old_id)
    assert (old["customer_name"], old["status"], str(old["total"])) == ("Ada", "Placed", "2.50")

    # (d) a new OrderPlaced is stored at v2, and neither loading nor projecting upcasts it again
    # (`customer_renamed` would fail on it: it has no `Customer`).
    new_id = uuid.uuid4()
    new_stream = await place(store, pool, account_id, order_placed(new_id, "CustomerName", "Grace"))
    [row] = await stored(pool, account_id, new_stream)
    assert row["schema_version"] == 2
    [loaded] = await store.load(pool, account_id, new_stream)
    assert loaded.payload["CustomerName"] == "Grace" and "Customer" not in loaded.payload
    await projector.catch_up(account_id)
    assert (await projected(pool, account_id, new_id))["customer_name"] == "Grace"

    # The stored rows never change (invariant 6): the old event is still v1, in its old shape.
    [row] = await stored(pool, account_id, old_stream)
    assert row["schema_version"] == 1 and row["payload"]["Customer"] == "Ada"


async def test_a_renamed_event_is_stored_where_the_chain_from_its_old_name_arrives(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """ThingMade v1 became ThingBuilt v2, which later got a field (v3): a ThingBuilt stored between
    the two changes (at v2) gets the second step, like an old ThingMade, and neither runs twice."""

    def renamed(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "ThingBuilt", {**payload, "Steps": [*payload.get("Steps", []), "renamed"]}

    def colour_added(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "ThingBuilt", {**payload, "Colour": "grey", "Steps": [*payload.get("Steps", []), "colour"]}

    first, second = Upcasters(), Upcasters()
    first.register("ThingMade", 1, renamed, to="ThingBuilt")
    second.register("ThingMade", 1, renamed, to="ThingBuilt")
    second.register("ThingBuilt", 2, colour_added)
    assert (first.version("ThingMade"), first.version("ThingBuilt")) == (2, 2)
    assert (second.version("ThingMade"), second.version("ThingBuilt")) == (2, 3)

    async def append(store: EventStore, stream_id: str, name: str) -> None:
        await store.append(
            pool, account_id, [StreamWrite(stream_id, "Thing", 0, [PendingEvent(name, {"N": 1})])], metadata()
        )

    await append(EventStore(), "Thing-made", "ThingMade")
    await append(EventStore(first), "Thing-built-between", "ThingBuilt")
    await append(EventStore(second), "Thing-built-after", "ThingBuilt")
    # A name retired by a rename but raised again is a new event: stored past the rename, not renamed.
    await append(EventStore(second), "Thing-made-again", "ThingMade")

    versions = {
        stream: (await stored(pool, account_id, stream))[0]["schema_version"]
        for stream in ("Thing-made", "Thing-built-between", "Thing-built-after", "Thing-made-again")
    }
    assert versions == {
        "Thing-made": 1,
        "Thing-built-between": 2,
        "Thing-built-after": 3,
        "Thing-made-again": 2,
    }

    store = EventStore(second)
    loaded = {
        stream: (await store.load(pool, account_id, stream))[0]
        for stream in ("Thing-made", "Thing-built-between", "Thing-built-after", "Thing-made-again")
    }
    assert {s: (e.name, e.payload) for s, e in loaded.items()} == {
        "Thing-made": ("ThingBuilt", {"N": 1, "Colour": "grey", "Steps": ["renamed", "colour"]}),
        "Thing-built-between": ("ThingBuilt", {"N": 1, "Colour": "grey", "Steps": ["colour"]}),
        "Thing-built-after": ("ThingBuilt", {"N": 1}),
        "Thing-made-again": ("ThingMade", {"N": 1}),
    }
