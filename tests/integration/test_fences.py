"""Fences: how a move holds an account's writes in one database (`tenancy/fences.sql`).

A fenced account's writes are refused before anything is written, per append (its batch mates are
stored); a fence waits for the writes that looked before it, so none of them commits after it;
and the only events that may ever be deleted are those of an account that does not live in the
database, by a session that names it.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from commands.customisation import CustomAttribute, Customisations
from commands.store.event_store import AppendResult, EventStore
from tenancy import fences
from tenancy.fences import ARRIVING, LEAVING, LEFT, AccountElsewhere
from tests.conftest import make_account
from tests.integration.test_event_store import metadata, stored, write
from tests.integration.test_group_commit import request

pytestmark = pytest.mark.timeout(60)


async def fence(pool: asyncpg.Pool[Any], account_id: UUID, state: str) -> None:
    async with pool.acquire() as connection, connection.transaction():
        await fences.fence(connection, account_id, state, "elsewhere", uuid.uuid4())


async def count_events(pool: asyncpg.Pool[Any], account_id: UUID) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM events WHERE account_id = $1", account_id))


@pytest.mark.parametrize("state", [ARRIVING, LEAVING, LEFT])
async def test_a_fenced_accounts_append_is_refused_and_its_batch_mates_are_stored(
    pool: asyncpg.Pool[Any], state: str
) -> None:
    fenced, free = await make_account(pool), await make_account(pool)
    await fence(pool, fenced, state)
    outcomes = await EventStore().append_batch(
        pool, [request(fenced, write("A-1", 0, 1)), request(free, write("B-1", 0, 1))]
    )
    refused, stored_one = outcomes
    assert isinstance(refused, AccountElsewhere)
    assert (refused.account_id, refused.state, refused.database) == (fenced, state, "elsewhere")
    assert isinstance(stored_one, AppendResult)
    assert await count_events(pool, fenced) == 0 and await count_events(pool, free) == 1
    counters = "SELECT count(*) FROM stream_sequences WHERE account_id = $1"
    assert await pool.fetchval(counters, fenced) == 0
    with pytest.raises(AccountElsewhere, match="to another tenant database"):
        await EventStore().append(pool, fenced, [write("A-1", 0, 1)], metadata())

    await fences.lift(pool, fenced)
    await EventStore().append(pool, fenced, [write("A-1", 0, 1)], metadata())
    assert await count_events(pool, fenced) == 1


async def test_a_fence_waits_for_a_write_that_looked_before_it(pool: asyncpg.Pool[Any]) -> None:
    account_id = await make_account(pool)
    store = EventStore()
    async with pool.acquire() as writer, writer.transaction():
        await store.append(writer, account_id, [write("W-1", 0, 2)], metadata())  # holds the write lock
        fencing = asyncio.create_task(fence(pool, account_id, LEAVING))
        await asyncio.sleep(0.5)
        assert not fencing.done(), "the fence went up while a write that missed it was still open"
    await asyncio.wait_for(fencing, 10)
    assert await count_events(pool, account_id) == 2  # the write that looked first is in
    with pytest.raises(AccountElsewhere):
        await store.append(pool, account_id, [write("W-1", 2, 1)], metadata())
    assert await count_events(pool, account_id) == 2


async def test_many_writers_and_a_fence_no_write_commits_after_it(pool: asyncpg.Pool[Any]) -> None:
    """Whatever the interleaving, every write either committed before the fence did or was refused."""
    account_id = await make_account(pool)
    store = EventStore()
    fenced_at: list[int] = []

    async def writer(n: int) -> None:
        for i in range(40):
            try:
                await store.append(pool, account_id, [write(f"S-{n}-{i}", 0, 1)], metadata())
            except AccountElsewhere:
                return

    async def fencer() -> None:
        await asyncio.sleep(0.05)
        await fence(pool, account_id, LEAVING)
        fenced_at.append(await count_events(pool, account_id))

    await asyncio.gather(*(writer(n) for n in range(8)), fencer())
    assert 0 < fenced_at[0] < 8 * 40
    assert await count_events(pool, account_id) == fenced_at[0]  # nothing landed after the fence


async def test_defining_an_attribute_for_a_fenced_account_is_refused(pool: asyncpg.Pool[Any]) -> None:
    account_id = await make_account(pool)
    await fence(pool, account_id, LEAVING)
    with pytest.raises(AccountElsewhere):
        await Customisations(pool).define(
            account_id, CustomAttribute("Order", "Region", "string", False, None)
        )
    assert await pool.fetchval("SELECT count(*) FROM customisations WHERE account_id = $1", account_id) == 0


async def delete_events(pool: asyncpg.Pool[Any], account_id: UUID, *, naming: bool) -> None:
    async with pool.acquire() as connection, connection.transaction():
        if naming:
            await connection.execute("SELECT set_config('erp.purging_account', $1, true)", str(account_id))
        await connection.execute("DELETE FROM events WHERE account_id = $1", account_id)


@pytest.mark.parametrize(
    ("state", "naming"), [(None, True), (LEAVING, True), (LEFT, False), (ARRIVING, False)]
)
async def test_events_stay_unless_their_account_does_not_live_here_and_the_session_names_it(
    pool: asyncpg.Pool[Any], state: str | None, naming: bool
) -> None:
    account_id = await make_account(pool)
    await EventStore().append(pool, account_id, [write("Kept-1", 0, 3)], metadata())
    before = await stored(pool, account_id, "Kept-1")
    if state is not None:
        await fence(pool, account_id, state)
    with pytest.raises(asyncpg.RestrictViolationError, match="immutable"):
        await delete_events(pool, account_id, naming=naming)
    assert await stored(pool, account_id, "Kept-1") == before


@pytest.mark.parametrize("state", [LEFT, ARRIVING])
async def test_the_copy_of_an_account_that_lives_elsewhere_can_be_removed_but_never_changed(
    pool: asyncpg.Pool[Any], state: str
) -> None:
    account_id, neighbour = await make_account(pool), await make_account(pool)
    for owner in (account_id, neighbour):
        await EventStore().append(pool, owner, [write("Gone-1", 0, 3)], metadata())
    await fence(pool, account_id, state)
    with pytest.raises(asyncpg.RestrictViolationError, match="immutable"):
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT set_config('erp.purging_account', $1, true)", str(account_id))
            await connection.execute("UPDATE events SET payload = '{}' WHERE account_id = $1", account_id)
    with pytest.raises(asyncpg.RestrictViolationError, match="immutable"):  # another account's: no
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT set_config('erp.purging_account', $1, true)", str(account_id))
            await connection.execute("DELETE FROM events WHERE account_id = ANY($1)", [account_id, neighbour])
    await delete_events(pool, account_id, naming=True)
    assert await count_events(pool, account_id) == 0 and await count_events(pool, neighbour) == 3
