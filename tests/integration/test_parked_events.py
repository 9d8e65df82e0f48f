"""Poison events as a sequenced dead-letter queue (`queries.projector.parking`), on the real database:
an event the read model refuses holds back the later events of its own stream, other streams go
on; a retry once the cause is fixed applies them in order, a skip passes the refused one by; a
rebuild parks afresh; and a retry racing the live projector and a writer loses no event and
applies none out of order.

The cause is a CHECK constraint a test adds to the orders read model (refusing one marked text,
as a column too narrow for a value would), and "fixing it" drops the constraint.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from commands.store.event_store import CommandMetadata, EventStore, PendingEvent, StreamWrite
from commands.store.feed import EventFeed
from commands.store.upcasting import Upcasters
from queries.projector import Projector, rebuild_account
from queries.projector.parking import NothingParked, release
from queries.registry import PROJECTIONS
from tests.conftest import make_account

ORDERS = PROJECTIONS["orders"]


@dataclass
class Poison:
    constraint: str
    marker: str
    pool: asyncpg.Pool[Any]

    async def cure(self) -> None:
        await self.pool.execute(f"ALTER TABLE rm_order DROP CONSTRAINT IF EXISTS {self.constraint}")


@pytest.fixture
async def poison(pool: asyncpg.Pool[Any]) -> AsyncIterator[Poison]:
    """The orders read model refuses a CancelReason of this test's marker, until cured."""
    found = Poison(f"test_poison_{uuid.uuid4().hex[:10]}", f"poison {uuid.uuid4().hex[:10]}", pool)
    await pool.execute(
        f"ALTER TABLE rm_order ADD CONSTRAINT {found.constraint} "
        f"CHECK (cancel_reason IS DISTINCT FROM '{found.marker}')"
    )
    yield found
    await found.cure()


class Orders:
    """Writes order events straight to the store, each stream's revisions counted here."""

    def __init__(self, pool: asyncpg.Pool[Any], account_id: UUID) -> None:
        self.pool, self.account_id = pool, account_id
        self.store = EventStore()
        self.revisions: dict[UUID, int] = {}

    async def _append(self, order_id: UUID, name: str, payload: dict[str, Any]) -> None:
        revision = self.revisions.get(order_id, 0)
        command = uuid.uuid4()
        await self.store.append(
            self.pool,
            self.account_id,
            [StreamWrite(f"Order-{order_id}", "Order", revision, [PendingEvent(name, payload)])],
            CommandMetadata(command, command, command),
        )
        self.revisions[order_id] = revision + 1

    async def place(self) -> UUID:
        order_id = uuid.uuid4()
        payload = {"OrderId": str(order_id), "CustomerName": "Park", "OrderLines": [], "Total": "3.00"}
        await self._append(order_id, "OrderPlaced", payload)
        return order_id

    async def cancel(self, order_id: UUID, reason: str) -> None:
        await self._append(order_id, "OrderCancelled", {"OrderId": str(order_id), "Reason": reason})


async def row(pool: asyncpg.Pool[Any], account_id: UUID, order_id: UUID) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT status, cancel_reason FROM rm_order WHERE account_id = $1 AND id = $2", account_id, order_id
    )


async def parked_rows(pool: asyncpg.Pool[Any], account_id: UUID) -> list[tuple[str, int, str, int | None]]:
    rows = await pool.fetch(
        "SELECT stream_id, sequence_number, reason, held_behind FROM parked_events "
        "WHERE projection = 'orders' AND account_id = $1 ORDER BY sequence_number",
        account_id,
    )
    return [(r["stream_id"], r["sequence_number"], r["reason"], r["held_behind"]) for r in rows]


async def poisoned_order(pool: asyncpg.Pool[Any], poison: Poison) -> tuple[UUID, Orders, UUID, Projector]:
    """An order placed, cancelled with the poison (refused), then cancelled again (held behind it);
    and another order placed after them, which is applied."""
    account_id = await make_account(pool)
    orders = Orders(pool, account_id)
    order = await orders.place()
    await orders.cancel(order, poison.marker)
    await orders.cancel(order, "second thoughts")
    other = await orders.place()
    projector = Projector(pool, ORDERS, EventFeed())
    await projector.catch_up(account_id)
    return order, orders, other, projector


async def test_a_refused_event_holds_back_its_stream_and_no_other(
    pool: asyncpg.Pool[Any], poison: Poison
) -> None:
    order, orders, other, projector = await poisoned_order(pool, poison)
    account_id = orders.account_id
    placed = await row(pool, account_id, order)
    assert placed is not None and placed["status"] == "Placed", "neither cancel passed the refused one"
    assert placed["cancel_reason"] is None
    assert await row(pool, account_id, other) is not None, "another stream goes on"
    parked = await parked_rows(pool, account_id)
    assert [(stream, behind) for stream, _, _, behind in parked] == [
        (f"Order-{order}", None),
        (f"Order-{order}", parked[0][1]),
    ]
    assert "CheckViolation" in parked[0][2] and "held behind" in parked[1][2]
    assert (await projector.lag(account_id)).events_behind == 0, "the checkpoint moved on"

    # A later batch holds the stream's next event too (the hold is stored, not only in the batch).
    await orders.cancel(order, "third thoughts")
    await projector.catch_up(account_id)
    assert [behind for *_, behind in await parked_rows(pool, account_id)] == [
        None,
        parked[0][1],
        parked[0][1],
    ]
    assert (await row(pool, account_id, order))["status"] == "Placed"  # type: ignore[index]


async def test_a_retry_once_the_cause_is_fixed_applies_the_stream_in_order(
    pool: asyncpg.Pool[Any], poison: Poison
) -> None:
    order, orders, _, projector = await poisoned_order(pool, poison)
    account_id = orders.account_id
    still = await release(pool, ORDERS, EventFeed(), account_id, f"Order-{order}")
    assert (still.applied, still.still_parked) == (0, 2) and still.reason and "CheckViolation" in still.reason
    assert len(await parked_rows(pool, account_id)) == 2, "refused again: nothing changes"

    await poison.cure()
    released = await release(pool, ORDERS, EventFeed(), account_id, f"Order-{order}")
    assert (released.applied, released.skipped, released.still_parked, released.reason) == (2, 0, 0, None)
    cancelled = await row(pool, account_id, order)
    assert cancelled is not None and (cancelled["status"], cancelled["cancel_reason"]) == (
        "Cancelled",
        "second thoughts",
    ), "the held event was applied after the refused one"
    assert await parked_rows(pool, account_id) == []
    with pytest.raises(NothingParked):
        await release(pool, ORDERS, EventFeed(), account_id, f"Order-{order}")
    # The stream flows again.
    await orders.cancel(order, "last word")
    await projector.catch_up(account_id)
    assert (await row(pool, account_id, order))["cancel_reason"] == "last word"  # type: ignore[index]


async def test_a_skip_passes_the_refused_event_by_and_applies_the_held_ones(
    pool: asyncpg.Pool[Any], poison: Poison
) -> None:
    order, orders, _, _ = await poisoned_order(pool, poison)
    account_id = orders.account_id
    released = await release(pool, ORDERS, EventFeed(), account_id, f"Order-{order}", skip=True)
    assert (released.applied, released.skipped, released.still_parked) == (1, 1, 0)
    skipped = await row(pool, account_id, order)
    assert skipped is not None and skipped["cancel_reason"] == "second thoughts"
    assert await parked_rows(pool, account_id) == []


async def test_a_rebuild_parks_afresh(pool: asyncpg.Pool[Any], poison: Poison) -> None:
    order, orders, _, projector = await poisoned_order(pool, poison)
    account_id = orders.account_id
    await rebuild_account(projector, account_id)
    assert len(await parked_rows(pool, account_id)) == 2, "refused again, and held again"
    await poison.cure()
    await rebuild_account(projector, account_id)
    assert await parked_rows(pool, account_id) == []
    assert (await row(pool, account_id, order))["cancel_reason"] == "second thoughts"  # type: ignore[index]


async def test_a_retry_racing_the_projector_and_a_writer_keeps_the_streams_order(
    pool: asyncpg.Pool[Any], poison: Poison
) -> None:
    """While a writer cancels the held order again and again and the live projector follows, the
    cause is fixed and the stream retried: afterwards nothing is parked and the row shows the
    stream's last event, whichever batches held or applied what."""
    order, orders, _, projector = await poisoned_order(pool, poison)
    account_id = orders.account_id
    writing = True

    async def write() -> int:
        n = 0
        while writing:
            n += 1
            await orders.cancel(order, f"reason {n}")
            await asyncio.sleep(0.002)
        return n

    async def project() -> None:
        while writing:
            await projector.run_batch(account_id)
            await asyncio.sleep(0.001)

    writer, follower = asyncio.create_task(write()), asyncio.create_task(project())
    await asyncio.sleep(0.3)
    await poison.cure()
    released = await release(pool, ORDERS, EventFeed(), account_id, f"Order-{order}")
    assert released.applied >= 2 and released.still_parked == 0
    await asyncio.sleep(0.3)
    writing = False
    last = await writer
    await follower
    await projector.catch_up(account_id)
    assert await parked_rows(pool, account_id) == []
    final = await row(pool, account_id, order)
    assert final is not None and final["cancel_reason"] == f"reason {last}"


async def test_two_releases_of_one_stream_at_once_release_it_once(
    pool: asyncpg.Pool[Any], poison: Poison
) -> None:
    """The second waits for the first's lock, then finds nothing left to release."""
    order, orders, _, _ = await poisoned_order(pool, poison)
    await poison.cure()
    stream = f"Order-{order}"
    answers = await asyncio.gather(
        release(pool, ORDERS, EventFeed(), orders.account_id, stream, skip=True),
        release(pool, ORDERS, EventFeed(), orders.account_id, stream, skip=True),
        return_exceptions=True,
    )
    assert sorted(type(a).__name__ for a in answers) == ["NothingParked", "Released"], answers
    [released] = [a for a in answers if not isinstance(a, BaseException)]
    assert (released.applied, released.skipped) == (1, 1)


async def test_an_event_the_upcasters_fail_on_is_parked_and_a_fixed_upcaster_releases_it(
    pool: asyncpg.Pool[Any],
) -> None:
    """OrderPlaced v1 named its customer `Customer`; an upcaster that insists on it fails on one
    stored without it. The projector parks that event (its stream's next held behind it) rather
    than stopping; loading the aggregate still fails loudly; with the upcaster fixed, a retry
    applies both in order."""
    account_id = await make_account(pool)
    good, bad = uuid.uuid4(), uuid.uuid4()
    for order_id, customer_field in ((bad, "Name"), (good, "Customer")):
        payload = {"OrderId": str(order_id), customer_field: "Up", "OrderLines": [], "Total": "1.00"}
        command = uuid.uuid4()
        await EventStore().append(  # stored at v1, as older code stored it
            pool,
            account_id,
            [StreamWrite(f"Order-{order_id}", "Order", 0, [PendingEvent("OrderPlaced", payload)])],
            CommandMetadata(command, command, command),
        )
    orders = Orders(pool, account_id)
    orders.revisions[bad] = 1
    await orders.cancel(bad, "held")

    def strict(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        rest = {k: v for k, v in payload.items() if k != "Customer"}
        return "OrderPlaced", {**rest, "CustomerName": payload["Customer"]}

    def fixed(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        rest = {k: v for k, v in payload.items() if k not in ("Customer", "Name")}
        return "OrderPlaced", {**rest, "CustomerName": payload.get("Customer", payload.get("Name"))}

    broken, mended = Upcasters(), Upcasters()
    broken.register("OrderPlaced", 1, strict)
    mended.register("OrderPlaced", 1, fixed)
    projector = Projector(pool, ORDERS, EventFeed(broken))
    await projector.catch_up(account_id)
    assert await row(pool, account_id, good) is not None and await row(pool, account_id, bad) is None
    parked = await parked_rows(pool, account_id)
    assert [(stream, behind is None) for stream, _, _, behind in parked] == [
        (f"Order-{bad}", True),
        (f"Order-{bad}", False),
    ]
    assert "in today's shape failed: KeyError" in parked[0][2]
    with pytest.raises(KeyError):
        await EventStore(broken).load(pool, account_id, f"Order-{bad}")

    still = await release(pool, ORDERS, EventFeed(broken), account_id, f"Order-{bad}")
    assert still.still_parked == 2 and still.reason and "KeyError" in still.reason
    released = await release(pool, ORDERS, EventFeed(mended), account_id, f"Order-{bad}")
    assert (released.applied, released.still_parked) == (2, 0)
    mended_row = await pool.fetchrow(
        "SELECT customer_name, status FROM rm_order WHERE account_id = $1 AND id = $2", account_id, bad
    )
    assert mended_row is not None and tuple(mended_row) == ("Up", "Cancelled")
