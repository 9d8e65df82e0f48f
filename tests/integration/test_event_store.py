"""The event store's six invariants (DESIGN.md, "Event store invariants") against the real Postgres.

Every test here would fail if the invariant it names were broken: no mocks, real
transactions, real row-level security and real triggers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import uuid
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from commands.errors import IdempotencyKeyReused
from commands.service import CommandResult, CommandService, command_id_for
from commands.store.event_store import (
    CommandLogEntry,
    CommandMetadata,
    ConcurrencyConflict,
    EventStore,
    PendingEvent,
    StreamWrite,
)
from commands.store.upcasting import Upcasters
from commands.stream_cache import StreamCache
from core.db import TENANT_ROLE
from tenancy.rls import tenant_transaction
from tenancy.routing import event_partition
from tests.conftest import make_account

pytestmark = pytest.mark.timeout(60)

TENANT_TABLES = (
    "events",
    "streams",
    "stream_sequences",
    "command_log",
    "rm_order",
    "accounts",
    "api_keys",
    "projection_checkpoints",
)


# --- helpers ---------------------------------------------------------------------------------------


def metadata() -> CommandMetadata:
    command_id = uuid.uuid4()
    return CommandMetadata(command_id, command_id, command_id)


def events(count: int, name: str = "Happened", **payload: Any) -> list[PendingEvent]:
    return [PendingEvent(name, {"N": n, **payload}) for n in range(1, count + 1)]


def write(stream_id: str, expected: int, count: int = 1, stream_type: str = "Thing") -> StreamWrite:
    return StreamWrite(stream_id, stream_type, expected, events(count))


async def stored(
    pool: asyncpg.Pool[Any] | asyncpg.Connection[Any], account_id: UUID, stream_id: str
) -> list[asyncpg.Record]:
    """A stream's rows as the superuser sees them (no RLS, no upcasting)."""
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT * FROM events WHERE account_id = $1 AND stream_id = $2 ORDER BY stream_revision",
        account_id,
        stream_id,
    )
    return rows


async def revisions(pool: asyncpg.Pool[Any], account_id: UUID, stream_id: str) -> list[int]:
    return [row["stream_revision"] for row in await stored(pool, account_id, stream_id)]


async def stream_revision(pool: asyncpg.Pool[Any], account_id: UUID, stream_id: str) -> int | None:
    value = await pool.fetchval(
        "SELECT revision FROM streams WHERE account_id = $1 AND stream_id = $2", account_id, stream_id
    )
    return None if value is None else int(value)


async def sequence_numbers(pool: asyncpg.Pool[Any], account_id: UUID, stream_type: str) -> list[int]:
    rows = await pool.fetch(
        "SELECT sequence_number FROM events WHERE account_id = $1 AND stream_type = $2 "
        "ORDER BY sequence_number",
        account_id,
        stream_type,
    )
    return [int(row[0]) for row in rows]


async def counter(pool: asyncpg.Pool[Any], account_id: UUID, stream_type: str) -> int | None:
    value = await pool.fetchval(
        "SELECT last_sequence FROM stream_sequences WHERE account_id = $1 AND stream_type = $2",
        account_id,
        stream_type,
    )
    return None if value is None else int(value)


async def event_count(pool: asyncpg.Pool[Any], account_id: UUID) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM events WHERE account_id = $1", account_id))


def place_order_body(order_id: UUID, customer: str = "Ada", quantity: int = 1) -> bytes:
    return json.dumps(
        {
            "OrderId": str(order_id),
            "CustomerName": customer,
            "OrderLines": [{"ProductCode": "P-1", "Quantity": quantity, "UnitPrice": "2.50"}],
        }
    ).encode()


class _Rollback(Exception):
    """Raised inside a transaction to roll it back on purpose."""


# --- 1. StreamRevision -----------------------------------------------------------------------------


async def test_stream_revisions_run_one_to_n_without_gaps(pool: asyncpg.Pool[Any], account_id: UUID) -> None:
    """Invariant 1: revisions are 1, 2, 3, ... per stream, across appends of several events."""
    store = EventStore()
    stream = f"Thing-{uuid.uuid4()}"
    expected = 0
    for count in (1, 3, 2, 1):
        result = await store.append(pool, account_id, [write(stream, expected, count)], metadata())
        expected += count
        assert result.revisions == {stream: expected}
    assert await revisions(pool, account_id, stream) == list(range(1, 8))
    assert await stream_revision(pool, account_id, stream) == 7
    loaded = await store.load(pool, account_id, stream)
    assert [e.stream_revision for e in loaded] == list(range(1, 8))
    assert [e.stream_revision for e in await store.load(pool, account_id, stream, after_revision=5)] == [6, 7]


async def test_a_stale_expected_revision_conflicts_and_writes_nothing(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """Invariant 1 (no lost update): an append expecting an older revision is refused whole."""
    store = EventStore()
    stream = f"Thing-{uuid.uuid4()}"
    await store.append(pool, account_id, [write(stream, 0, 2)], metadata())
    before_counter = await counter(pool, account_id, "Thing")
    for stale in (0, 1):
        with pytest.raises(ConcurrencyConflict) as caught:
            await store.append(pool, account_id, [write(stream, stale, 1)], metadata())
        assert caught.value.stream_id == stream
        assert caught.value.expected == stale
        assert caught.value.actual == 2
    assert await revisions(pool, account_id, stream) == [1, 2]
    assert await stream_revision(pool, account_id, stream) == 2
    assert await counter(pool, account_id, "Thing") == before_counter


async def test_an_expected_revision_ahead_of_the_stream_conflicts(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """Invariant 1 (no gaps): expecting a revision the stream has not reached would leave a hole."""
    store = EventStore()
    stream = f"Thing-{uuid.uuid4()}"
    with pytest.raises(ConcurrencyConflict) as caught:  # the stream does not exist yet
        await store.append(pool, account_id, [write(stream, 3, 1)], metadata())
    assert (caught.value.expected, caught.value.actual) == (3, 0)
    assert await revisions(pool, account_id, stream) == []
    assert await stream_revision(pool, account_id, stream) is None

    await store.append(pool, account_id, [write(stream, 0, 2)], metadata())
    for ahead in (3, 5):
        with pytest.raises(ConcurrencyConflict) as caught:
            await store.append(pool, account_id, [write(stream, ahead, 1)], metadata())
        assert (caught.value.expected, caught.value.actual) == (ahead, 2)
    assert await revisions(pool, account_id, stream) == [1, 2]
    assert await sequence_numbers(pool, account_id, "Thing") == [1, 2]
    assert await counter(pool, account_id, "Thing") == 2


async def test_concurrent_writers_with_the_same_loaded_revision_one_wins_per_round(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """Invariant 1: 20 writers load the same revision, then append at once: exactly one wins.

    Barriers make every round a true race; whatever the interleaving, exactly the
    winners' events are stored and the revisions are 1..rounds.
    """
    store = EventStore()
    stream = f"Thing-{uuid.uuid4()}"
    writers, rounds = 20, 5
    loaded, appended = asyncio.Barrier(writers), asyncio.Barrier(writers)
    wins: list[tuple[int, int, int]] = []
    conflicts = 0

    async def writer(w: int) -> None:
        nonlocal conflicts
        for r in range(rounds):
            history = await store.load(pool, account_id, stream)
            revision = history[-1].stream_revision if history else 0
            await loaded.wait()
            try:
                result = await store.append(
                    pool,
                    account_id,
                    [StreamWrite(stream, "Thing", revision, [PendingEvent("Won", {"W": w, "R": r})])],
                    metadata(),
                )
            except ConcurrencyConflict:
                conflicts += 1
            else:
                wins.append((w, r, result.revisions[stream]))
            await appended.wait()

    await asyncio.wait_for(asyncio.gather(*(writer(w) for w in range(writers))), 30)
    assert len(wins) == rounds
    assert conflicts == (writers - 1) * rounds
    assert sorted(revision for _, _, revision in wins) == list(range(1, rounds + 1))
    rows = await stored(pool, account_id, stream)
    assert [row["stream_revision"] for row in rows] == list(range(1, rounds + 1))
    assert {(row["payload"]["W"], row["payload"]["R"], row["stream_revision"]) for row in rows} == set(wins)
    assert await stream_revision(pool, account_id, stream) == rounds


async def test_concurrent_writers_retrying_on_conflict_lose_no_update(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """Invariant 1: 20 writers each load-and-append until it sticks; all 20 events, revisions 1..20."""
    store = EventStore()
    stream = f"Thing-{uuid.uuid4()}"
    writers = 20
    successes: dict[int, int] = {}

    async def writer(w: int) -> None:
        while True:
            history = await store.load(pool, account_id, stream)
            revision = history[-1].stream_revision if history else 0
            await asyncio.sleep(random.uniform(0, 0.002))
            try:
                result = await store.append(
                    pool,
                    account_id,
                    [StreamWrite(stream, "Thing", revision, [PendingEvent("Added", {"W": w})])],
                    metadata(),
                )
            except ConcurrencyConflict:
                continue
            successes[w] = result.revisions[stream]
            return

    await asyncio.wait_for(asyncio.gather(*(writer(w) for w in range(writers))), 30)
    rows = await stored(pool, account_id, stream)
    assert [row["stream_revision"] for row in rows] == list(range(1, writers + 1))
    assert {row["payload"]["W"]: row["stream_revision"] for row in rows} == successes
    assert sorted(successes) == list(range(writers))


# --- 2. SequenceNumber -----------------------------------------------------------------------------


async def test_sequence_numbers_count_per_account_and_stream_type(pool: asyncpg.Pool[Any]) -> None:
    """Invariant 2: each (AccountId, StreamType) has its own 1..N, shared by all its streams."""
    store = EventStore()
    a, b = await make_account(pool), await make_account(pool)
    for account in (a, b):
        for i in range(3):
            await store.append(
                pool,
                account,
                [write(f"Person-{i}", 0, 2, "Person"), write(f"Order-{i}", 0, 1, "Order")],
                metadata(),
            )
    await store.append(pool, a, [write("Person-0", 2, 3, "Person")], metadata())
    assert await sequence_numbers(pool, a, "Person") == list(range(1, 10))
    assert await sequence_numbers(pool, a, "Order") == [1, 2, 3]
    assert await sequence_numbers(pool, b, "Person") == list(range(1, 7))
    assert await sequence_numbers(pool, b, "Order") == [1, 2, 3]
    assert await counter(pool, a, "Person") == 9
    # Within a stream, sequence numbers follow revisions.
    rows = await stored(pool, a, "Person-0")
    assert [row["stream_revision"] for row in rows] == [1, 2, 3, 4, 5]
    numbers = [row["sequence_number"] for row in rows]
    assert numbers == sorted(numbers)


async def test_a_rolled_back_append_leaves_no_sequence_gap(pool: asyncpg.Pool[Any], account_id: UUID) -> None:
    """Invariant 2: numbers drawn by a transaction that rolls back are drawn again, not skipped."""
    store = EventStore()
    await store.append(pool, account_id, [write("Thing-a", 0, 2)], metadata())
    with pytest.raises(_Rollback):
        async with tenant_transaction(pool, account_id) as connection:
            result = await store.append(connection, account_id, [write("Thing-b", 0, 3)], metadata())
            assert result.positions == {"Thing": 5}
            raise _Rollback
    assert await counter(pool, account_id, "Thing") == 2
    assert await stream_revision(pool, account_id, "Thing-b") is None
    result = await store.append(pool, account_id, [write("Thing-c", 0, 1)], metadata())
    assert result.positions == {"Thing": 3}
    assert await sequence_numbers(pool, account_id, "Thing") == [1, 2, 3]


async def test_a_reader_never_sees_a_sequence_gap_that_is_filled_later(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """Invariant 2, the Marten bug: with 30 writers committing out of start order (random delay
    between the append and the commit) and some transactions rolling back, a reader polling
    `sequence_number > last_seen` sees every number 1..N exactly once, in order, batch after
    contiguous batch. With numbers from a plain Postgres sequence it would see 7 before 6 commits.
    """
    store = EventStore()
    stream_type = "Ticket"
    writers, appends = 30, 20
    committed = 0
    done = asyncio.Event()
    batches: list[list[int]] = []

    async def writer(w: int) -> None:
        nonlocal committed
        stream = f"Ticket-{w}"
        revision = 0
        for j in range(appends):
            count = 2 if (w + j) % 5 == 0 else 1
            roll_back = (w * 7 + j) % 9 == 0
            try:
                async with tenant_transaction(pool, account_id) as connection:
                    await store.append(
                        connection, account_id, [write(stream, revision, count, stream_type)], metadata()
                    )
                    await asyncio.sleep(random.uniform(0, 0.005))
                    if roll_back:
                        raise _Rollback
            except _Rollback:
                continue
            revision += count
            committed += count

    async def reader(connection: asyncpg.Connection[Any]) -> None:
        last_seen = 0
        while True:
            finished = done.is_set()  # read once more after the last writer committed
            rows = await connection.fetch(
                "SELECT sequence_number FROM events WHERE account_id = $1 AND stream_type = $2 "
                "AND sequence_number > $3 ORDER BY sequence_number",
                account_id,
                stream_type,
                last_seen,
            )
            if rows:
                batch = [int(row[0]) for row in rows]
                batches.append(batch)
                last_seen = batch[-1]
            if finished:
                return
            await asyncio.sleep(0)

    async def write_all() -> None:
        try:
            await asyncio.gather(*(writer(w) for w in range(writers)))
        finally:
            done.set()

    async with pool.acquire() as connection:
        await asyncio.wait_for(asyncio.gather(reader(connection), write_all()), 30)

    assert committed > 0
    seen = [number for batch in batches for number in batch]
    assert seen == list(range(1, committed + 1)), "the reader saw a gap, a repeat or a number out of order"
    position = 0
    for batch in batches:  # each read continues exactly where the previous one stopped
        assert batch == list(range(position + 1, position + 1 + len(batch)))
        position = batch[-1]
    assert len(batches) >= 5, "the reader should have polled while writers were still committing"
    assert await sequence_numbers(pool, account_id, stream_type) == list(range(1, committed + 1))
    assert await counter(pool, account_id, stream_type) == committed
    for w in range(writers):
        found = await revisions(pool, account_id, f"Ticket-{w}")
        assert found == list(range(1, len(found) + 1))


# --- 3. Atomic multi-stream append -----------------------------------------------------------------


async def test_a_multi_stream_append_stores_every_stream_in_one_commit(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """Invariant 3: one append to a Customer and an Order stream stores both, under one command."""
    store = EventStore()
    meta = metadata()
    result = await store.append(
        pool,
        account_id,
        [write("Order-1", 0, 1, "Order"), write("Customer-1", 0, 2, "Customer")],
        meta,
    )
    assert result.revisions == {"Order-1": 1, "Customer-1": 2}
    assert result.positions == {"Order": 1, "Customer": 2}
    rows = await pool.fetch("SELECT * FROM events WHERE account_id = $1", account_id)
    assert len(rows) == 3
    assert {row["command_id"] for row in rows} == {meta.command_id}
    assert len({row["commit_time"] for row in rows}) == 1  # one transaction


@pytest.mark.parametrize("valid_first", [True, False], ids=["stale-stream-sorted-last", "stale-sorted-first"])
async def test_a_multi_stream_append_with_one_stale_stream_stores_nothing(
    pool: asyncpg.Pool[Any], valid_first: bool
) -> None:
    """Invariant 3: if one stream of an append is stale, none of the append is stored and the
    sequence counters do not move (whichever stream the store checks first)."""
    account_id = await make_account(pool)
    store = EventStore()
    # The store handles streams sorted by id: "A-..." before "Z-...".
    fresh_id, stale_id = ("A-customer", "Z-order") if valid_first else ("Z-customer", "A-order")
    await store.append(pool, account_id, [write(stale_id, 0, 1, "Order")], metadata())
    await store.append(pool, account_id, [write("Other-customer", 0, 1, "Customer")], metadata())
    counters_before = {t: await counter(pool, account_id, t) for t in ("Order", "Customer")}

    with pytest.raises(ConcurrencyConflict) as caught:
        await store.append(
            pool,
            account_id,
            [write(fresh_id, 0, 2, "Customer"), write(stale_id, 0, 1, "Order")],
            metadata(),
            CommandLogEntry("PlaceOrder", b"hash", {"StreamId": stale_id, "Revision": 1}),
        )
    assert caught.value.stream_id == stale_id
    assert await revisions(pool, account_id, fresh_id) == []
    assert await stream_revision(pool, account_id, fresh_id) is None
    assert await revisions(pool, account_id, stale_id) == [1]
    assert {t: await counter(pool, account_id, t) for t in ("Order", "Customer")} == counters_before
    assert await pool.fetchval("SELECT count(*) FROM command_log WHERE account_id = $1", account_id) == 0

    # The next good append continues the counters with no gap.
    result = await store.append(pool, account_id, [write(fresh_id, 0, 1, "Customer")], metadata())
    assert result.positions == {"Customer": 2}
    assert await sequence_numbers(pool, account_id, "Customer") == [1, 2]


# --- 4. Idempotency --------------------------------------------------------------------------------


async def test_the_same_idempotency_key_returns_the_original_result_and_appends_once(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """Invariant 4: a retried command returns the first result and appends nothing more, even
    after the stream has moved on (the replay is not re-decided)."""
    service = CommandService(pool, EventStore())
    order_id = uuid.uuid4()
    key = f"key-{uuid.uuid4()}"
    command = service.parse("PlaceOrder", place_order_body(order_id))
    first = await service.execute(account_id, command, key)
    second = await service.execute(account_id, service.parse("PlaceOrder", place_order_body(order_id)), key)
    assert second == first
    assert first.revision == 1
    command_id, _ = command_id_for(key)
    assert await pool.fetchval("SELECT count(*) FROM events WHERE command_id = $1", command_id) == 1
    assert await event_count(pool, account_id) == 1
    assert await counter(pool, account_id, "Order") == 1

    # The order moves on; a late retry of the PlaceOrder still gets its original answer.
    await service.execute(
        account_id,
        service.parse("CancelOrder", json.dumps({"OrderId": str(order_id), "Reason": "x"}).encode()),
    )
    third = await service.execute(account_id, command, key)
    assert third == first
    assert await revisions(pool, account_id, f"Order-{order_id}") == [1, 2]


async def test_concurrent_retries_with_one_idempotency_key_append_once(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """Invariant 4 under a race: 10 copies of one command at once (some through a stream cache)
    append exactly one event, and all 10 get the identical result, never a refusal such as
    "already placed" (that would be the command deciding again instead of replaying). Twenty rounds,
    each with a fresh key and order."""
    rounds, copies = 20, 10
    for round_ in range(rounds):
        services = [
            CommandService(pool, EventStore(), cache=StreamCache() if i % 2 else None) for i in range(copies)
        ]
        order_id = uuid.uuid4()
        key = str(uuid.uuid4())
        body = place_order_body(order_id)
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                *(s.execute(account_id, s.parse("PlaceOrder", body), key) for s in services),
                return_exceptions=True,
            ),
            30,
        )
        errors = [repr(outcome) for outcome in outcomes if isinstance(outcome, BaseException)]
        assert errors == [], f"round {round_}: retries of one command were refused: {errors}"
        results = [outcome for outcome in outcomes if isinstance(outcome, CommandResult)]
        assert all(result == results[0] for result in results)
        assert results[0].revision == 1
        assert results[0].positions == {"Order": round_ + 1}
        assert await revisions(pool, account_id, f"Order-{order_id}") == [1]
        assert await event_count(pool, account_id) == round_ + 1
        assert await counter(pool, account_id, "Order") == round_ + 1
    assert await pool.fetchval("SELECT count(*) FROM command_log WHERE account_id = $1", account_id) == rounds


async def test_an_idempotency_key_reused_for_another_payload_is_refused(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """Invariant 4: a key names one command; reusing it for a different body (or command) is refused
    and appends nothing."""
    service = CommandService(pool, EventStore())
    key = "reused-key"
    order_id = uuid.uuid4()
    await service.execute(account_id, service.parse("PlaceOrder", place_order_body(order_id)), key)
    with pytest.raises(IdempotencyKeyReused):
        await service.execute(
            account_id, service.parse("PlaceOrder", place_order_body(order_id, quantity=2)), key
        )
    other_order = uuid.uuid4()
    with pytest.raises(IdempotencyKeyReused):
        await service.execute(account_id, service.parse("PlaceOrder", place_order_body(other_order)), key)
    with pytest.raises(IdempotencyKeyReused):
        await service.execute(
            account_id,
            service.parse("CancelOrder", json.dumps({"OrderId": str(order_id), "Reason": "x"}).encode()),
            key,
        )
    assert await event_count(pool, account_id) == 1
    assert await revisions(pool, account_id, f"Order-{other_order}") == []


async def test_concurrent_different_payloads_with_one_key_append_once(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """Invariant 4 under a race: 10 different commands sharing a key: one appends, nine are refused."""
    services = [CommandService(pool, EventStore()) for _ in range(10)]
    key = str(uuid.uuid4())

    async def attempt(service: CommandService) -> CommandResult | None:
        try:
            return await service.execute(
                account_id, service.parse("PlaceOrder", place_order_body(uuid.uuid4())), key
            )
        except IdempotencyKeyReused:
            return None

    outcomes = await asyncio.wait_for(asyncio.gather(*(attempt(s) for s in services)), 30)
    assert sum(outcome is not None for outcome in outcomes) == 1
    assert await event_count(pool, account_id) == 1
    assert await counter(pool, account_id, "Order") == 1


# --- 5. Isolation ----------------------------------------------------------------------------------


async def populate(pool: asyncpg.Pool[Any], account_id: UUID, orders: int) -> None:
    """Rows in every tenant table for one account (events via the store, the rest as superuser)."""
    store = EventStore()
    for i in range(orders):
        await store.append(
            pool,
            account_id,
            [write(f"Order-{i}", 0, 1, "Order"), write(f"Customer-{i}", 0, 1, "Customer")],
            metadata(),
            CommandLogEntry("PlaceOrder", os.urandom(32), {"StreamId": f"Order-{i}", "Revision": 1}),
        )
        order_id = uuid.uuid4()
        await pool.execute(
            "INSERT INTO rm_order (account_id, id, order_id, customer_name, status, total, order_lines, "
            "created_at, updated_at) VALUES ($1, $2, $2, 'Ada', 'Placed', 1, $3, now(), now())",
            account_id,
            order_id,
            [],
        )
        await pool.execute(
            "INSERT INTO api_keys (key_hash, account_id) VALUES ($1, $2)", os.urandom(32), account_id
        )
    await pool.execute(
        "INSERT INTO projection_checkpoints (projection, account_id, stream_type, position) "
        "VALUES ('isolation-test', $1, 'Order', 1)",
        account_id,
    )


async def test_a_tenant_query_without_a_filter_sees_only_its_own_account(pool: asyncpg.Pool[Any]) -> None:
    """Invariant 5: under account A's session, unfiltered queries count only A's rows in every
    tenant table, although account B (and other tests' accounts) have rows too."""
    a, b = await make_account(pool), await make_account(pool)
    await populate(pool, a, 2)
    await populate(pool, b, 3)
    async with tenant_transaction(pool, a) as connection:
        for table in TENANT_TABLES:
            own = await pool.fetchval(f"SELECT count(*) FROM {table} WHERE account_id = $1", a)
            everyone = await pool.fetchval(f"SELECT count(*) FROM {table}")
            assert own > 0 and everyone > own, table
            assert await connection.fetchval(f"SELECT count(*) FROM {table}") == own, table
            assert await connection.fetchval(f"SELECT count(DISTINCT account_id) FROM {table}") == 1, table
        # Changing another account's rows is impossible too: they are invisible to UPDATE.
        assert await connection.execute(
            "UPDATE streams SET revision = revision + 1 WHERE account_id = $1", b
        ) == ("UPDATE 0")
    assert await stream_revision(pool, b, "Order-0") == 1


async def test_a_tenant_cannot_write_rows_of_another_account(pool: asyncpg.Pool[Any]) -> None:
    """Invariant 5: row-level security's WITH CHECK refuses a row carrying another AccountId."""
    a, b = await make_account(pool), await make_account(pool)
    command_id = uuid.uuid4()
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with tenant_transaction(pool, a) as connection:
            await connection.execute(
                "INSERT INTO events (account_id, stream_id, stream_revision, payload_item_name, payload, "
                "stream_type, sequence_number, command_id, correlation_id, causation_id) "
                "VALUES ($1, 'Order-x', 1, 'OrderPlaced', '{}', 'Order', 1, $2, $2, $2)",
                b,
                command_id,
            )
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with tenant_transaction(pool, a) as connection:
            await connection.execute(
                "INSERT INTO command_log (account_id, command_id, command_name, request_hash, result) "
                "VALUES ($1, $2, 'PlaceOrder', '\\x00', '{}')",
                b,
                command_id,
            )
    assert await event_count(pool, b) == 0


async def test_without_an_account_a_tenant_session_sees_nothing(pool: asyncpg.Pool[Any]) -> None:
    """Invariant 5: a tenant session that never set its AccountId sees no row and writes none."""
    a = await make_account(pool)
    await populate(pool, a, 1)
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(f"SET LOCAL ROLE {TENANT_ROLE}")
        for table in TENANT_TABLES:
            assert await connection.fetchval(f"SELECT count(*) FROM {table}") == 0, table
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(f"SET LOCAL ROLE {TENANT_ROLE}")
            await connection.execute(
                "INSERT INTO streams (account_id, stream_id, stream_type, revision) "
                "VALUES ($1, 'Thing-x', 'Thing', 1)",
                a,
            )


async def test_every_account_lives_in_exactly_one_partition(pool: asyncpg.Pool[Any]) -> None:
    """Invariant 5: an account's events live in exactly one partition of the event store."""
    a, b = await make_account(pool), await make_account(pool)
    await populate(pool, a, 2)
    await populate(pool, b, 1)
    for account, count in ((a, 4), (b, 2)):
        rows = await pool.fetch(
            "SELECT tableoid::regclass::text AS part FROM events WHERE account_id = $1", account
        )
        assert len(rows) == count
        assert {row["part"] for row in rows} == {await event_partition(pool, account)}


async def test_a_store_call_cannot_reach_another_account_from_a_tenant_transaction(
    pool: asyncpg.Pool[Any],
) -> None:
    """Invariant 5: inside account A's tenant transaction, loading with account B's id must not
    hand out B's events (the session says A; the store must not override it)."""
    a, b = await make_account(pool), await make_account(pool)
    await populate(pool, a, 1)
    await populate(pool, b, 2)
    async with tenant_transaction(pool, a) as connection:
        try:
            leaked = await EventStore().load(connection, b, "Order-0")
        except asyncpg.PostgresError:
            leaked = []
        assert leaked == [], "account A's tenant transaction loaded account B's stream"


async def test_a_store_call_does_not_rescope_the_rest_of_a_tenant_transaction(
    pool: asyncpg.Pool[Any],
) -> None:
    """Invariant 5: after any store call inside account A's tenant transaction, an unfiltered query
    in that transaction still sees only A's rows."""
    a, b = await make_account(pool), await make_account(pool)
    await populate(pool, a, 1)
    await populate(pool, b, 2)
    own = await pool.fetchval("SELECT count(*) FROM rm_order WHERE account_id = $1", a)
    async with tenant_transaction(pool, a) as connection:
        with contextlib.suppress(asyncpg.PostgresError):
            async with connection.transaction():  # a savepoint: a refused call must not end the test
                await EventStore().load(connection, b, "Order-0")
        visible = [row[0] for row in await connection.fetch("SELECT DISTINCT account_id FROM rm_order")]
        assert visible == [a], "after a store call with account B's id, A's transaction sees B's orders"
        assert await connection.fetchval("SELECT count(*) FROM rm_order") == own
        assert await connection.fetchval("SELECT current_setting('erp.account_id')") == str(a)


# --- 6. Immutability -------------------------------------------------------------------------------


async def immutable_setup(pool: asyncpg.Pool[Any]) -> tuple[UUID, list[asyncpg.Record]]:
    account_id = await make_account(pool)
    await EventStore().append(pool, account_id, [write("Thing-1", 0, 3)], metadata())
    return account_id, await stored(pool, account_id, "Thing-1")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET payload = '{\"Tampered\": true}' WHERE account_id = $1",
        "UPDATE events SET stream_revision = stream_revision + 10 WHERE account_id = $1",
        "DELETE FROM events WHERE account_id = $1",
        "DELETE FROM events WHERE account_id = $1 AND stream_revision = 3",
        "UPDATE {partition} SET payload_item_name = 'Other' WHERE account_id = $1",
        "DELETE FROM {partition} WHERE account_id = $1",
    ],
)
async def test_the_superuser_cannot_update_or_delete_events(pool: asyncpg.Pool[Any], statement: str) -> None:
    """Invariant 6: the trigger refuses UPDATE and DELETE even to the superuser, on the event
    store and on an account's partition."""
    account_id, before = await immutable_setup(pool)
    sql = statement.replace("{partition}", await event_partition(pool, account_id))
    with pytest.raises(asyncpg.RestrictViolationError, match="immutable"):
        await pool.execute(sql, account_id)
    assert await stored(pool, account_id, "Thing-1") == before


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET payload = '{\"Tampered\": true}'",
        "DELETE FROM events",
        "TRUNCATE events",
    ],
)
async def test_a_tenant_cannot_update_delete_or_truncate_events(
    pool: asyncpg.Pool[Any], statement: str
) -> None:
    """Invariant 6: the tenant role cannot change its own stored events either."""
    account_id, before = await immutable_setup(pool)
    with pytest.raises((asyncpg.InsufficientPrivilegeError, asyncpg.RestrictViolationError)):
        async with tenant_transaction(pool, account_id) as connection:
            await connection.execute(statement)
    assert await stored(pool, account_id, "Thing-1") == before


async def test_the_superuser_cannot_truncate_the_event_store(pool: asyncpg.Pool[Any]) -> None:
    """Invariant 6: TRUNCATE events is refused (it would bypass the row triggers)."""
    account_id, before = await immutable_setup(pool)
    with pytest.raises(asyncpg.RestrictViolationError, match="immutable"):
        await pool.execute("TRUNCATE events")
    assert await stored(pool, account_id, "Thing-1") == before


async def test_the_superuser_cannot_truncate_an_accounts_partition(pool: asyncpg.Pool[Any]) -> None:
    """Invariant 6: TRUNCATE of one account's partition is refused as well (a statement trigger on
    a partitioned table does not fire for its partitions)."""
    account_id, before = await immutable_setup(pool)
    partition = await event_partition(pool, account_id)
    try:
        with pytest.raises(asyncpg.RestrictViolationError, match="immutable"):
            async with pool.acquire() as connection, connection.transaction():
                await connection.execute(f"TRUNCATE {partition}")
                # If TRUNCATE went through, prove the loss, then roll it back to keep the database whole.
                assert await stored(connection, account_id, "Thing-1") == []
                raise _Rollback
    except _Rollback:
        pytest.fail(f"TRUNCATE {partition} deleted the account's events")
    assert await stored(pool, account_id, "Thing-1") == before


async def test_an_upcaster_changes_what_load_returns_but_not_the_stored_row(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """Invariant 6: schema change goes through upcasters at load time; the stored row is untouched."""
    await EventStore().append(
        pool,
        account_id,
        [
            StreamWrite(
                "Customer-1", "Customer", 0, [PendingEvent("CustomerRegistered", {"Name": "Ada Lovelace"})]
            )
        ],
        metadata(),
    )
    before = await stored(pool, account_id, "Customer-1")

    def v1_to_v2(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        first, last = payload.pop("Name").split(" ", 1)  # mutates its input on purpose
        payload.update(FirstName=first, LastName=last)
        return "CustomerRegistered", payload

    upcasters = Upcasters()
    upcasters.register("CustomerRegistered", 1, v1_to_v2)
    upcasting = EventStore(upcasters)
    for _ in range(2):  # loading twice upcasts the stored v1 payload each time
        [loaded] = await upcasting.load(pool, account_id, "Customer-1")
        assert loaded.name == "CustomerRegistered"
        assert loaded.payload == {"FirstName": "Ada", "LastName": "Lovelace"}

    [plain] = await EventStore().load(pool, account_id, "Customer-1")
    assert plain.payload == {"Name": "Ada Lovelace"}
    after = await stored(pool, account_id, "Customer-1")
    assert after == before
    assert after[0]["payload"] == {"Name": "Ada Lovelace"}
    assert after[0]["schema_version"] == 1
