"""Blue/green versions of a read model (`queries.blue_green`), against a database of the test's own:
a version built beside the live one equals it row for row, readers see the old tables until the
switch and the new ones after, an aborted build changes nothing, and a build stopped halfway goes
on from where it was."""

from __future__ import annotations

import asyncio
import json
import uuid
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from commands.service import CommandService
from commands.store.event_store import EventStore
from commands.store.feed import EventFeed
from queries import versions
from queries.blue_green import Build, Chunk, NotBuilt, ShapeChanged, drop_retired
from queries.projector import Projector
from queries.projector.fan_out import FanOut
from queries.registry import PROJECTIONS
from tests.conftest import make_account
from tests.integration.erp_history import erp_history, read_models

ALL_TABLES = """
SELECT c.relname FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'i', 'v') ORDER BY 1
"""
FUNCTIONS = "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1"


async def projected(pool: asyncpg.Pool[Any], accounts: int = 2, rounds: int = 2) -> list[UUID]:
    """Accounts with an ERP history each, every projection caught up."""
    service = CommandService(pool, EventStore())
    made = [await make_account(pool) for _ in range(accounts)]
    for seed, account_id in enumerate(made):
        await erp_history(service, account_id, rounds, seed)
    for projection in PROJECTIONS.values():
        await Projector(pool, projection, EventFeed()).catch_up()
    for projection in PROJECTIONS.values():
        await FanOut(pool, projection, None).drain()
    return made


async def place_order(pool: asyncpg.Pool[Any], account_id: UUID) -> None:
    service = CommandService(pool, EventStore())
    body = {
        "OrderId": str(uuid.uuid4()),
        "CustomerName": "Late",
        "OrderLines": [{"ProductCode": "L", "Quantity": 1, "UnitPrice": "1.00"}],
    }
    await service.execute(account_id, service.parse("PlaceOrder", json.dumps(body).encode()))


async def build_all(
    pool: asyncpg.Pool[Any], name: str, chunk: int | None = None
) -> tuple[Build, list[Chunk]]:
    build = await Build.prepare(pool, PROJECTIONS[name], EventFeed())
    if chunk is not None:
        build.chunk = build.max_chunk = chunk
    chunks: list[Chunk] = []
    await build.bulk_pass(done=chunks.append)
    await build.catch_up()
    return build, chunks


@pytest.mark.parametrize("name", list(PROJECTIONS))
async def test_a_version_built_beside_the_live_one_equals_it_row_for_row(
    own_pool: asyncpg.Pool[Any], name: str
) -> None:
    await projected(own_pool)
    before = await read_models(own_pool)
    build, chunks = await build_all(own_pool, name)
    assert chunks and all(c.bulk for c in chunks), "every chunk folded"
    assert await build.switch() == 1
    assert await read_models(own_pool) == before
    found = {(v.version, v.state) for v in await versions.versions(own_pool, name)}
    assert found == {(1, versions.State.RETIRED), (2, versions.State.LIVE)}
    retired = PROJECTIONS[name].versioned(1).tables
    assert all([await own_pool.fetchval("SELECT to_regclass($1) IS NOT NULL", t) for t in retired])
    await drop_retired(own_pool, PROJECTIONS[name], 1)
    assert not any([await own_pool.fetchval("SELECT to_regclass($1) IS NOT NULL", t) for t in retired])
    # The live projector goes on over the switched-in tables, under their checkpoints.
    accounts = [r["account_id"] for r in await own_pool.fetch("SELECT account_id FROM accounts")]
    await place_order(own_pool, accounts[0])
    for projection in PROJECTIONS.values():
        await Projector(own_pool, projection, EventFeed()).catch_up()
    lag = await Projector(own_pool, PROJECTIONS[name], EventFeed()).lag()
    assert lag.events_behind == 0


async def test_a_chunked_build_folds_rows_across_chunks_as_the_live_projector_does(
    own_pool: asyncpg.Pool[Any],
) -> None:
    """Tiny chunks: a row created in one chunk is read back and updated in the next ones."""
    await projected(own_pool, accounts=3, rounds=2)
    before = await read_models(own_pool)
    for name in PROJECTIONS:
        build, chunks = await build_all(own_pool, name, chunk=3)
        assert len(chunks) >= 10
        await build.switch()
    assert await read_models(own_pool) == before


async def test_readers_see_the_old_version_until_the_switch_and_the_new_one_after(
    own_pool: asyncpg.Pool[Any],
) -> None:
    accounts = await projected(own_pool, accounts=3)
    count = await own_pool.fetchval("SELECT count(*) FROM rm_order")
    # A read model gone wrong (as a bug would leave it): the rebuild must put it right.
    await own_pool.execute("UPDATE rm_order SET status = 'Wrong'")
    build = await Build.prepare(own_pool, PROJECTIONS["orders"], EventFeed())
    build.chunk = build.max_chunk = 4
    seen: list[tuple[int, int, int]] = []

    def look(_: Chunk) -> None:
        seen.append((0, 0, 0))

    async def reader(stop: asyncio.Event) -> None:
        while not stop.is_set():
            row = await own_pool.fetchrow(
                "SELECT count(*) AS n, count(*) FILTER (WHERE status = 'Wrong') AS wrong FROM rm_order"
            )
            assert row is not None
            shadow = await own_pool.fetchval(f"SELECT count(*) FROM {build.shadow.tables[0]}")
            seen.append((row["n"], row["wrong"], shadow))
            await asyncio.sleep(0.001)

    stop = asyncio.Event()
    reading = asyncio.create_task(reader(stop))
    await build.bulk_pass(done=look)
    await place_order(own_pool, accounts[1])  # appended during the build: the catch-up takes it
    await build.catch_up()
    stop.set()
    await reading
    readings = [s for s in seen if s != (0, 0, 0)]
    assert readings and all(n == wrong == count for n, wrong, _ in readings), "only the old version"
    assert any(0 < shadow < count for _, _, shadow in readings), "read while the new one was half built"
    await build.switch()
    row = await own_pool.fetchrow(
        "SELECT count(*) AS n, count(*) FILTER (WHERE status = 'Wrong') AS wrong FROM rm_order"
    )
    assert row is not None and row["n"] == count + 1 and row["wrong"] == 0


async def test_the_switch_waits_for_the_live_projector_and_catches_up_with_it(
    own_pool: asyncpg.Pool[Any],
) -> None:
    """With the live projector following busy writers, the switched-in version has every event the
    live one had applied (no client told of a position sees the read model go back)."""
    accounts = await projected(own_pool, accounts=2, rounds=1)
    live = Projector(own_pool, PROJECTIONS["orders"], EventFeed(), batch_size=3, pairs_per_batch=1)
    build, _ = await build_all(own_pool, "orders")
    stop = asyncio.Event()
    told: list[int] = []

    async def follow() -> None:
        while not stop.is_set():
            for advanced in await live.run_batch():
                told.append(advanced.position)
            await asyncio.sleep(0.001)

    async def write() -> None:
        while not stop.is_set():
            await place_order(own_pool, accounts[0])

    tasks = [asyncio.create_task(follow()), asyncio.create_task(write())]
    try:
        await asyncio.sleep(0.3)
        await build.switch()
        told_by_now = max(told, default=0)  # taken before the follower runs again
        async with own_pool.acquire() as connection, connection.transaction(isolation="repeatable_read"):
            position = await connection.fetchval(
                "SELECT position FROM projection_checkpoints WHERE projection = 'orders' AND account_id = $1",
                accounts[0],
            )
            orders = await connection.fetchval(
                "SELECT count(*) FROM rm_order WHERE account_id = $1", accounts[0]
            )
            placed = await connection.fetchval(
                "SELECT count(*) FROM events WHERE account_id = $1 AND stream_type = 'Order' "
                "AND stream_revision = 1 AND sequence_number <= $2",
                accounts[0],
                position,
            )
        assert told_by_now and position >= told_by_now, "no position a client was told of is lost"
        assert orders == placed, "the switched-in tables hold exactly what their checkpoint says"
        await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    await live.catch_up()
    count = await own_pool.fetchval("SELECT count(*) FROM rm_order WHERE account_id = $1", accounts[0])
    placed = await own_pool.fetchval(
        "SELECT count(*) FROM events WHERE account_id = $1 AND stream_type = 'Order' AND stream_revision = 1",
        accounts[0],
    )
    assert count == placed


async def test_an_aborted_build_changes_nothing(own_pool: asyncpg.Pool[Any]) -> None:
    await projected(own_pool)
    objects = await own_pool.fetch(ALL_TABLES)
    functions = await own_pool.fetch(FUNCTIONS)
    models = await read_models(own_pool)
    checkpoints = await own_pool.fetch("SELECT * FROM projection_checkpoints ORDER BY 1, 2, 3")
    for name in PROJECTIONS:
        build = await Build.prepare(own_pool, PROJECTIONS[name], EventFeed())
        build.chunk = build.max_chunk = 5
        chunks: list[Chunk] = []

        def stop_early(chunk: Chunk, chunks: list[Chunk] = chunks) -> None:
            chunks.append(chunk)
            if len(chunks) == 3:
                raise asyncio.CancelledError

        with pytest.raises(asyncio.CancelledError):
            await build.bulk_pass(done=stop_early)
        await build.abort()
    assert await own_pool.fetch(ALL_TABLES) == objects
    assert await own_pool.fetch(FUNCTIONS) == functions
    assert await read_models(own_pool) == models
    assert await own_pool.fetch("SELECT * FROM projection_checkpoints ORDER BY 1, 2, 3") == checkpoints
    states = {(v.projection, v.version, v.state) for v in await versions.versions(own_pool)}
    assert states == {
        *((name, 1, versions.State.LIVE) for name in PROJECTIONS),
        *((name, 2, versions.State.ABORTED) for name in PROJECTIONS),
    }
    again = await Build.prepare(own_pool, PROJECTIONS["orders"], EventFeed())
    assert again.version == 3, "an aborted version's number is not used again"
    await again.abort()


async def test_a_build_stopped_halfway_goes_on_from_its_cursor_and_equals_a_fresh_one(
    own_pool: asyncpg.Pool[Any],
) -> None:
    await projected(own_pool, accounts=3)
    fresh_build, _ = await build_all(own_pool, "customers")
    await fresh_build.switch()
    fresh = await read_models(own_pool)
    build = await Build.prepare(own_pool, PROJECTIONS["customers"], EventFeed())
    build.chunk = build.max_chunk = 4
    reached: list[Chunk] = []

    def die_after_five(chunk: Chunk) -> None:
        reached.append(chunk)
        if len(reached) == 5:
            raise RuntimeError("the worker was killed")

    with pytest.raises(RuntimeError):
        await build.bulk_pass(done=die_after_five)
    again = await Build.prepare(own_pool, PROJECTIONS["customers"], EventFeed())
    assert again.version == build.version, "the version being built goes on"
    again.chunk = again.max_chunk = 4
    await again.bulk_pass(reached[-1].cursor)
    await again.catch_up()
    await again.switch()
    assert await read_models(own_pool) == fresh


async def test_a_switch_run_again_answers_as_the_first_and_a_live_version_is_neither_aborted_nor_dropped(
    own_pool: asyncpg.Pool[Any],
) -> None:
    await projected(own_pool, accounts=1, rounds=1)
    build, _ = await build_all(own_pool, "activities")
    assert await build.switch() == 1
    assert await build.switch() == 1, "a retry after the switch committed (a worker gone meanwhile)"
    with pytest.raises(NotBuilt):
        await build.abort()
    with pytest.raises(NotBuilt):
        await drop_retired(own_pool, PROJECTIONS["activities"], build.version)
    await drop_retired(own_pool, PROJECTIONS["activities"], 1)
    await drop_retired(own_pool, PROJECTIONS["activities"], 1)  # again: nothing more to drop
    states = {(v.version, v.state) for v in await versions.versions(own_pool, "activities")}
    assert states == {(1, versions.State.DROPPED), (2, versions.State.LIVE)}
    after = await Build.prepare(own_pool, PROJECTIONS["activities"], EventFeed())
    assert after.version == 3
    await after.abort()
    with pytest.raises(NotBuilt):
        await after.switch()


async def test_the_switch_keeps_a_pair_the_live_projector_has_only_just_begun(
    own_pool: asyncpg.Pool[Any],
) -> None:
    """A new account's first order: the live projector has started its checkpoint at 0 (its look
    found the pair) but not applied it when the switch comes. The switched-in checkpoints must have
    the pair, or the live projector could never claim it again."""
    await projected(own_pool, accounts=1, rounds=1)
    build, _ = await build_all(own_pool, "orders")
    newcomer = await make_account(own_pool)
    await place_order(own_pool, newcomer)
    live = Projector(own_pool, PROJECTIONS["orders"], EventFeed())
    async with own_pool.acquire() as connection:
        await live.find_work(connection)  # the pair is in its work set, its checkpoint at 0
    await build.switch()
    for _ in range(20):
        await live.run_batch()
    assert await own_pool.fetchval("SELECT count(*) FROM rm_order WHERE account_id = $1", newcomer) == 1


async def test_a_version_started_under_another_model_cannot_go_on(own_pool: asyncpg.Pool[Any]) -> None:
    await projected(own_pool, accounts=1, rounds=1)
    build, _ = await build_all(own_pool, "orders")
    await own_pool.execute(
        "UPDATE projection_versions SET shape = 'another' WHERE projection = 'orders' AND version = $1",
        build.version,
    )
    with pytest.raises(ShapeChanged):
        await build.check_shape()
    with pytest.raises(ShapeChanged):
        await build.switch()
    again = await Build.prepare(own_pool, PROJECTIONS["orders"], EventFeed())
    assert again.version == build.version + 1, "prepare aborts the version of another shape"


async def test_a_release_that_changes_a_shape_wants_a_new_version_and_an_older_one_does_not(
    own_pool: asyncpg.Pool[Any],
) -> None:
    assert await versions.new_shapes(own_pool, PROJECTIONS.values()) == []
    # The live version was built by an older release, whose model gave orders another shape.
    await own_pool.execute("UPDATE projection_versions SET shape = 'older' WHERE projection = 'orders'")
    assert await versions.new_shapes(own_pool, PROJECTIONS.values()) == ["orders"]
    build, _ = await build_all(own_pool, "orders")
    await build.switch()
    assert await versions.new_shapes(own_pool, PROJECTIONS.values()) == []
    # A worker of the older release, not yet replaced, finds its shape among the versions: no build.
    older = SimpleNamespace(name="orders", shape="older")
    assert await versions.new_shapes(own_pool, [older]) == []  # type: ignore[list-item]


async def test_a_build_parks_what_its_tables_refuse_and_the_switch_keeps_them_parked(
    own_pool: asyncpg.Pool[Any],
) -> None:
    """A chunk with an event the new version's tables refuse goes event by event: the event is
    parked under the version's name (the rest applied), and the switch brings it to the live name."""
    accounts = await projected(own_pool, accounts=2, rounds=1)
    await place_order(own_pool, accounts[0])  # its CustomerName is "Late"
    build = await Build.prepare(own_pool, PROJECTIONS["orders"], EventFeed())
    # The new version is stricter than the live one (as a narrower column would be).
    await own_pool.execute(
        f"ALTER TABLE {build.shadow.tables[0]} ADD CONSTRAINT refuse_late CHECK (customer_name <> 'Late')"
    )
    chunks: list[Chunk] = []
    await build.bulk_pass(done=chunks.append)
    await build.catch_up()
    assert any(not c.bulk for c in chunks), "the chunk with the refused event went event by event"
    parked = "SELECT projection, reason FROM parked_events WHERE account_id = $1"
    [refused] = await own_pool.fetch(parked, accounts[0])
    assert refused["projection"] == "orders@v2" and "refuse_late" in refused["reason"]
    built = await own_pool.fetchval(f"SELECT count(*) FROM {build.shadow.tables[0]}")
    await build.switch()
    [refused] = await own_pool.fetch(parked, accounts[0])
    assert refused["projection"] == "orders"
    assert await own_pool.fetchval("SELECT count(*) FROM rm_order") == built == 8  # all but the refused
    assert await own_pool.fetchval("SELECT count(*) FROM rm_order WHERE customer_name = 'Late'") == 0
