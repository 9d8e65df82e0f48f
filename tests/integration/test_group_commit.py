"""Group commit against the real Postgres: appends share transactions and each is still atomic on its own.

The invariants of DESIGN.md hold per append whatever else rode in its batch:
a refused append writes nothing, the others are stored, sequence numbers stay
gap-free for readers, and no batch ever acts outside its appends' accounts.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from commands.store.event_store import (
    APPEND_BATCH,
    MAX_BATCH,
    AppendRequest,
    AppendResult,
    CommandAlreadyLogged,
    CommandLogEntry,
    ConcurrencyConflict,
    EventStore,
    PendingEvent,
    StreamWrite,
    batch_arguments,
)
from tenancy.rls import tenant_transaction
from tests.conftest import make_account
from tests.integration.test_event_store import (
    _Rollback,
    counter,
    metadata,
    revisions,
    sequence_numbers,
    stream_revision,
    write,
)

pytestmark = pytest.mark.timeout(90)


async def accounts(pool: asyncpg.Pool[Any], count: int) -> list[UUID]:
    return [await make_account(pool, f"Group {n}") for n in range(count)]


def request(account_id: UUID, *writes: StreamWrite, log: CommandLogEntry | None = None) -> AppendRequest:
    return AppendRequest(account_id, sorted(writes, key=lambda w: w.stream_id), metadata(), log)


async def transactions_holding(pool: asyncpg.Pool[Any], account_ids: list[UUID]) -> list[int]:
    """For each transaction that wrote events of these accounts: how many of the accounts it wrote."""
    rows = await pool.fetch(
        "SELECT count(DISTINCT account_id) AS n FROM events WHERE account_id = ANY($1) GROUP BY xmin::text",
        account_ids,
    )
    return sorted(int(row["n"]) for row in rows)


async def test_concurrent_appends_of_many_accounts_commit_together(pool: asyncpg.Pool[Any]) -> None:
    """Twenty callers at once: every append is stored, and fewer transactions than appends carried them."""
    ids = await accounts(pool, 20)
    store = EventStore(lanes=1)
    results = await asyncio.gather(
        *(store.append(pool, a, [write(f"Thing-{n}", 0, 2)], metadata()) for n, a in enumerate(ids))
    )
    assert [r.revisions for r in results] == [{f"Thing-{n}": 2} for n in range(20)]
    assert all(r.positions == {"Thing": 2} for r in results)
    for n, a in enumerate(ids):
        assert await revisions(pool, a, f"Thing-{n}") == [1, 2]
    shared = await transactions_holding(pool, ids)
    assert sum(shared) == 20 and max(shared) > 1, "no transaction carried more than one account's append"


async def test_a_refused_append_writes_nothing_and_its_batch_mates_are_stored(
    pool: asyncpg.Pool[Any],
) -> None:
    """One batch: a stale stream, a stale stream among two, a logged command id and two good appends."""
    store = EventStore()
    ok, stale, stale_pair, duplicate, ok_logged = await accounts(pool, 5)
    logged = metadata()
    for account_id in (stale, stale_pair):
        await store.append(pool, account_id, [write("Thing-old", 0, 2)], metadata())
    await store.append(
        pool, duplicate, [write("Thing-old", 0, 1)], logged, CommandLogEntry("Do", b"h", {"Done": True})
    )
    repeat = AppendRequest(
        duplicate, [write("Thing-new", 0, 1)], logged, CommandLogEntry("Do", b"h", {"Done": True})
    )
    batch = [
        request(ok, write("Thing-a", 0, 1)),
        request(stale, write("Thing-old", 1, 1)),
        request(stale_pair, write("Thing-fresh", 0, 1), write("Thing-old", 1, 1)),
        repeat,
        request(ok_logged, write("Thing-b", 0, 3), log=CommandLogEntry("Do", b"h", {"Done": True})),
    ]
    random.shuffle(batch)  # the store puts them in account order itself
    outcomes = dict(zip((r.account_id for r in batch), await store.append_batch(pool, batch), strict=True))

    assert isinstance(outcomes[ok], AppendResult) and outcomes[ok].positions == {"Thing": 1}
    assert isinstance(outcomes[ok_logged], AppendResult) and outcomes[ok_logged].positions == {"Thing": 3}
    conflict = outcomes[stale]
    assert isinstance(conflict, ConcurrencyConflict)
    assert (conflict.stream_id, conflict.expected, conflict.actual) == ("Thing-old", 1, 2)
    assert isinstance(outcomes[stale_pair], ConcurrencyConflict)
    assert isinstance(outcomes[duplicate], CommandAlreadyLogged)

    assert await revisions(pool, ok, "Thing-a") == [1]
    assert await revisions(pool, ok_logged, "Thing-b") == [1, 2, 3]
    assert await pool.fetchval("SELECT result FROM command_log WHERE account_id = $1", ok_logged) == {
        "Done": True,
        "Positions": {"Thing": 3},
    }
    for account_id in (stale, stale_pair):
        assert await revisions(pool, account_id, "Thing-old") == [1, 2]
        assert await counter(pool, account_id, "Thing") == 2
    assert await stream_revision(pool, stale_pair, "Thing-fresh") is None, "the refused append left a stream"
    assert await stream_revision(pool, duplicate, "Thing-new") is None
    assert await counter(pool, duplicate, "Thing") == 1


async def test_a_batch_the_server_refuses_whole_is_retried_append_by_append(pool: asyncpg.Pool[Any]) -> None:
    """A payload Postgres cannot store fails the batch's statement; only its own caller sees the error."""
    ids = await accounts(pool, 6)
    bad = ids[3]
    store = EventStore(lanes=1)

    async def append(account_id: UUID) -> AppendResult:
        text = "nul \u0000 inside" if account_id == bad else "fine"
        pending = [PendingEvent("Happened", {"Text": text})]
        return await store.append(pool, account_id, [StreamWrite("Thing-1", "Thing", 0, pending)], metadata())

    first = asyncio.ensure_future(append(ids[0]))  # in flight while the others queue into one batch
    await asyncio.sleep(0)
    outcomes = await asyncio.gather(first, *(append(a) for a in ids[1:]), return_exceptions=True)

    assert isinstance(outcomes[3], asyncpg.UntranslatableCharacterError)
    assert all(isinstance(o, AppendResult) for n, o in enumerate(outcomes) if n != 3)
    for account_id in ids:
        expected = [] if account_id == bad else [1]
        assert await revisions(pool, account_id, "Thing-1") == expected
    assert await counter(pool, bad, "Thing") is None


async def test_readers_never_see_a_sequence_gap_with_batched_and_direct_writers(
    pool: asyncpg.Pool[Any],
) -> None:
    """Invariant 2 with group commit: batched writers over four accounts race writers appending inside
    their own transactions (random delay before commit, some rolled back). A reader per account sees
    every number exactly once, in order; no deadlock, and batches did carry several accounts."""
    ids = await accounts(pool, 4)
    store = EventStore()
    committed = dict.fromkeys(ids, 0)
    done = asyncio.Event()
    seen: dict[UUID, list[int]] = {a: [] for a in ids}

    async def batched(w: int) -> None:
        for j in range(25):
            account_id = ids[(w + j) % len(ids)]
            count = 1 + (w + j) % 2
            await store.append(pool, account_id, [write(f"Ticket-b{w}-{j}", 0, count, "Ticket")], metadata())
            committed[account_id] += count

    async def direct(w: int) -> None:
        for j in range(10):
            account_id = ids[(w * 3 + j) % len(ids)]
            try:
                async with tenant_transaction(pool, account_id) as connection:
                    await store.append(
                        connection, account_id, [write(f"Ticket-d{w}-{j}", 0, 1, "Ticket")], metadata()
                    )
                    await asyncio.sleep(random.uniform(0, 0.005))
                    if (w + j) % 4 == 0:
                        raise _Rollback
            except _Rollback:
                continue
            committed[account_id] += 1

    async def reader(account_id: UUID) -> None:
        async with pool.acquire() as connection:
            while True:
                finished = done.is_set()
                last = seen[account_id][-1] if seen[account_id] else 0
                rows = await connection.fetch(
                    "SELECT sequence_number FROM events WHERE account_id = $1 AND stream_type = 'Ticket' "
                    "AND sequence_number > $2 ORDER BY sequence_number",
                    account_id,
                    last,
                )
                seen[account_id] += [int(row[0]) for row in rows]
                if finished:
                    return
                await asyncio.sleep(0)

    async def write_all() -> None:
        try:
            await asyncio.gather(*(batched(w) for w in range(24)), *(direct(w) for w in range(6)))
        finally:
            done.set()

    await asyncio.wait_for(asyncio.gather(write_all(), *(reader(a) for a in ids)), 60)

    for account_id in ids:
        assert committed[account_id] > 0
        assert seen[account_id] == list(range(1, committed[account_id] + 1)), "a gap, repeat or reordering"
        assert await sequence_numbers(pool, account_id, "Ticket") == seen[account_id]
    assert max(await transactions_holding(pool, ids)) > 1, "the batched writers never shared a transaction"


async def test_a_batch_cannot_reach_beyond_the_account_of_a_tenant_transaction(
    pool: asyncpg.Pool[Any],
) -> None:
    mine, other = await accounts(pool, 2)
    store = EventStore()
    async with tenant_transaction(pool, mine) as connection:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await store.append_batch(
                connection, [request(mine, write("Thing-1", 0)), request(other, write("Thing-1", 0))]
            )
    assert await stream_revision(pool, mine, "Thing-1") is None
    assert await stream_revision(pool, other, "Thing-1") is None


async def test_a_transaction_that_appended_for_several_accounts_is_left_scoped_to_none(
    pool: asyncpg.Pool[Any],
) -> None:
    ids = await accounts(pool, 3)
    store = EventStore()
    async with pool.acquire() as connection, connection.transaction():
        outcomes = await store.append_batch(connection, [request(a, write("Thing-1", 0)) for a in ids])
        assert all(isinstance(o, AppendResult) for o in outcomes)
        assert await connection.fetchval("SELECT count(*) FROM events") == 0, "RLS should show nothing"
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("INSERT INTO streams VALUES ($1, 'Sneaky-1', 'Sneaky', 1)", ids[0])


async def test_the_batch_function_takes_distinct_accounts_in_order_and_at_most_sixty(
    pool: asyncpg.Pool[Any],
) -> None:
    a, b = sorted(await accounts(pool, 2))
    sql = APPEND_BATCH
    for requests in ([request(b, write("Thing-1", 0)), request(a, write("Thing-1", 0))],
                     [request(a, write("Thing-1", 0)), request(a, write("Thing-2", 0))]):  # fmt: skip
        with pytest.raises(asyncpg.InvalidParameterValueError):
            await pool.fetch(sql, *batch_arguments(requests))
    assert MAX_BATCH <= 60
    many = [request(uuid.UUID(int=n), write("Thing-1", 0)) for n in range(1, 62)]
    with pytest.raises(asyncpg.ProgramLimitExceededError):
        await pool.fetch(sql, *batch_arguments(many))
    assert await stream_revision(pool, a, "Thing-1") is None
