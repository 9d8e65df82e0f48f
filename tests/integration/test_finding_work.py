"""Finding work costs what there is to do: a live projector looks only at the (account, stream
type) pairs whose counters moved since its last look, from an index, so idle accounts cost
nothing (DESIGN.md, Scale)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from commands.store.event_store import EventStore
from queries.projector import Projector
from queries.registry import PROJECTIONS
from tests.integration.test_bounded_locks import add_accounts, order
from tests.integration.test_event_store import metadata

IDLE = 2000

# The look `erp_changed_pairs` makes (queries/projector/checkpoints.sql), with its horizon inlined.
LOOK = """
SELECT s.account_id, s.stream_type FROM stream_sequences s
WHERE s.changed >= '{horizon}'::xid8 AND s.stream_type = ANY('{{Order}}')
  AND s.last_sequence > coalesce((
      SELECT c.position FROM projection_checkpoints c
      WHERE c.projection = 'orders' AND c.account_id = s.account_id AND c.stream_type = s.stream_type
  ), 0)
"""


def scanned(plan: Any) -> list[tuple[str, str | None, int]]:
    """(node type, index, actual rows) of every node that reads stream_sequences or the checkpoints."""
    found = []
    if plan.get("Relation Name") in ("stream_sequences", "projection_checkpoints"):
        found.append((plan["Node Type"], plan.get("Index Name"), plan["Actual Rows"]))
    for child in plan.get("Plans", []):
        found += scanned(child)
    return found


async def test_a_live_projector_looks_only_at_the_accounts_that_moved(own_pool: asyncpg.Pool[Any]) -> None:
    accounts = await add_accounts(own_pool, IDLE)
    projector = Projector(own_pool, PROJECTIONS["orders"], EventStore().feed)
    await projector.catch_up()
    async with own_pool.acquire() as connection:
        await projector.find_work(connection)
    assert set(projector._work) == set(), "caught up, nothing is left to do"

    moved = sorted(accounts[:3])
    await EventStore().append_batch(own_pool, [order(a) for a in moved])
    horizon = projector._horizon
    async with own_pool.acquire() as connection:
        await projector.find_work(connection)
        [row] = await connection.fetch(f"EXPLAIN (ANALYZE, FORMAT JSON) {LOOK.format(horizon=horizon)}")
    assert set(projector._work) == {(a, "Order") for a in moved}
    # From the `changed` index, reading the moved counters only, not the idle ones.
    # The moved counters from the `changed` index, and each one's checkpoint by its key: no node
    # reads the idle accounts' rows.
    nodes = scanned(json.loads(row[0])[0]["Plan"])
    assert {node for node, _, _ in nodes} <= {"Index Scan", "Bitmap Heap Scan", "Index Only Scan"}, nodes
    assert all(rows <= len(moved) for _, _, rows in nodes), f"{nodes}: read more than the {len(moved)} moved"

    assert await projector.run_batch()
    assert set(projector._work) == set()
    assert (await projector.lag()).events_behind == 0
    assert await projector.backlog() == 0


async def test_a_backlog_in_one_account_delays_another_by_one_batch_at_most(
    own_pool: asyncpg.Pool[Any],
) -> None:
    """Fairness: a batch shares its events evenly among the pairs it claims, so an account with a
    big backlog takes its share, not the batch, and a quiet account's new event goes in the very
    next batch."""
    [busy, quiet] = sorted(await add_accounts(own_pool, 2))  # one order each
    store = EventStore()
    for _ in range(10):  # 500 more orders waiting in one account
        await store.append(own_pool, busy, [order(busy).writes[0] for _ in range(50)], metadata())
    await store.append_batch(own_pool, [order(quiet)])
    projector = Projector(own_pool, PROJECTIONS["orders"], store.feed, batch_size=100)
    advanced = await projector.run_batch()
    by_account = {a.account_id: a.position for a in advanced}
    assert by_account.get(quiet) == 2, f"the quiet account waited behind the busy one: {advanced}"
    assert by_account[busy] == 50, "the busy account took more than its share of the batch"


async def test_pairs_another_projector_holds_do_not_stall_the_ones_behind_them(
    own_pool: asyncpg.Pool[Any],
) -> None:
    """A batch claims the work set's first pairs; when another projector (a zombie, a rebuild)
    holds all of them, the same batch goes on with the pairs behind them rather than idling."""
    await add_accounts(own_pool, 4)  # one order each: four lagging pairs
    projector = Projector(own_pool, PROJECTIONS["orders"], EventStore().feed, pairs_per_batch=2)
    async with own_pool.acquire() as connection:
        await projector.find_work(connection)
    first, second, *behind = list(projector._work)
    assert len(behind) == 2
    async with own_pool.acquire() as holder, holder.transaction():
        await holder.execute(
            "SELECT 1 FROM projection_checkpoints WHERE projection = 'orders'"
            " AND (account_id, stream_type) IN (($1, $2), ($3, $4)) FOR UPDATE",
            *first,
            *second,
        )
        advanced = await projector.run_batch()
    assert {(a.account_id, a.stream_type) for a in advanced} == set(behind)
