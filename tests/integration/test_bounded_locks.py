"""Scale: a statement's lock footprint does not grow with the number of accounts.

With a partition per account, the projector's read locked every partition of `events`, and at
10,000 accounts Postgres ran out of its lock table for every tenant at once. Partitions are now a
fixed number (migration 0009): an append batch, a projector batch and a rebuild hold locks on the
same relations with 20 accounts as with a few thousand, far inside the default lock table.
"""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

import asyncpg

from commands.store.event_store import AppendRequest, EventStore, PendingEvent, StreamWrite
from queries.projector import Projector
from queries.projector.rebuild import _replay
from queries.registry import PROJECTIONS
from tests.integration.test_event_store import metadata

MANY = 3000

LOCKED = """
SELECT count(DISTINCT l.relation) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND c.relnamespace = 'public'::regnamespace
"""


async def add_accounts(pool: asyncpg.Pool[Any], count: int) -> list[UUID]:
    """`count` active accounts with one placed order each, appended 50 accounts to a batch."""
    ids = sorted(uuid.uuid4() for _ in range(count))
    await pool.execute(
        "INSERT INTO accounts (account_id, name, status) "
        "SELECT a, 'Many', 'Active' FROM unnest($1::uuid[]) a",
        ids,
    )
    store = EventStore()
    for start in range(0, count, 50):
        await store.append_batch(pool, [order(a) for a in ids[start : start + 50]])
    return ids


def order(account_id: UUID) -> AppendRequest:
    order_id = uuid.uuid4()
    payload = {"OrderId": str(order_id), "CustomerName": "Ada", "OrderLines": [], "Total": "0.00"}
    write = StreamWrite(f"Order-{order_id}", "Order", 0, [PendingEvent("OrderPlaced", payload)])
    return AppendRequest(account_id, [write], metadata())


async def footprint(pool: asyncpg.Pool[Any], accounts: list[UUID]) -> dict[str, int]:
    """Relations locked by each kind of statement, counted in its own transaction before it ends."""
    store = EventStore()
    projector = Projector(pool, PROJECTIONS["orders"], store.feed)
    found: dict[str, int] = {}
    async with pool.acquire() as connection:
        async with connection.transaction():
            await store.append_batch(connection, [order(a) for a in sorted(accounts[-50:])])
            found["append batch"] = await connection.fetchval(LOCKED)
        await projector.find_work(connection)
        async with connection.transaction():
            assert await projector.apply(connection, None, [], [])
            found["projector batch"] = await connection.fetchval(LOCKED)
        account_id = accounts[0]
        async with connection.transaction():  # what `rebuild_account` runs in its transaction
            await projector.checkpoints.restart(connection, account_id)
            await projector.projection.clear(connection, account_id)
            await _replay(projector, connection, account_id)
            found["rebuild"] = await connection.fetchval(LOCKED)
    return found


async def test_locks_held_do_not_grow_with_the_number_of_accounts(own_pool: asyncpg.Pool[Any]) -> None:
    few = await add_accounts(own_pool, 20)
    with_few = await footprint(own_pool, few)
    many = few + await add_accounts(own_pool, MANY - 20)
    with_many = await footprint(own_pool, many)
    partitions = await own_pool.fetchval(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass"
    )
    print(f"{len(few)} accounts: {with_few}; {len(many)} accounts: {with_many}; {partitions} partitions")
    # An append batch locks the partitions its accounts hash to (its size decides, at most all of
    # them); a projector batch and a rebuild lock no more relations with many accounts than with few
    # (fewer, maybe: an order's insert reads its customer's name, and once its statement has a
    # generic plan, only the customers' indexes that plan uses are locked, not all it could use).
    for kind in ("projector batch", "rebuild"):
        assert with_many[kind] <= with_few[kind], f"{kind}: {with_few[kind]} -> {with_many[kind]} locks"
    # Far inside the default lock table (max_locks_per_transaction 64 x max_connections 100), and
    # bounded by the partitions: each of events, streams and the command log, with their keys.
    bound = 6 * partitions + 40
    assert max([*with_few.values(), *with_many.values()]) <= bound, (with_many, bound)
