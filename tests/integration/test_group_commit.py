"""Group commit against the real Postgres: appends share transactions and each is still atomic on its own.

The invariants of DESIGN.md hold per append whatever else rode in its batch:
a refused append writes nothing, the others are stored, sequence numbers stay
gap-free for readers, and no batch ever acts outside its appends' accounts.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from commands.service import CommandService
from commands.store.event_store import (
    APPEND_BATCH,
    MAX_BATCH,
    AppendRequest,
    AppendResult,
    CommandAlreadyLogged,
    CommandLogEntry,
    CommandMetadata,
    ConcurrencyConflict,
    EventStore,
    PendingEvent,
    StreamWrite,
    batch_arguments,
)
from tenancy.fences import LEAVING, AccountElsewhere
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


async def test_the_batch_function_takes_accounts_in_order_each_together_and_at_most_sixty(
    pool: asyncpg.Pool[Any],
) -> None:
    a, b = sorted(await accounts(pool, 2))
    sql = APPEND_BATCH
    for requests in ([request(b, write("Thing-1", 0)), request(a, write("Thing-1", 0))],
                     [request(a, write("Thing-1", 0)), request(b, write("Thing-2", 0)),
                      request(a, write("Thing-2", 0))]):  # fmt: skip
        with pytest.raises(asyncpg.InvalidParameterValueError):
            await pool.fetch(sql, *batch_arguments(requests))
    assert MAX_BATCH <= 60
    many = [request(uuid.UUID(int=n), write("Thing-1", 0)) for n in range(1, 62)]
    with pytest.raises(asyncpg.ProgramLimitExceededError):
        await pool.fetch(sql, *batch_arguments(many))
    assert await stream_revision(pool, a, "Thing-1") is None


# --- several appends of one account in one batch ----------------------------------------------------


async def queued(store: EventStore, pool: asyncpg.Pool[Any], count: int) -> None:
    """Wait (up to 30 s) until `count` appends wait in the store's group commit queues for `pool`."""
    group = store._group(pool)
    for _ in range(3000):
        if sum(len(queue) for queue in group._queues) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} appends never waited in the queue together")


async def test_the_same_logged_write_twice_in_one_batch_is_a_duplicate_not_a_conflict(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """Two appends in one batch with one command id and the same write (same stream, same expected
    revision): the second is answered as the first's duplicate, before it writes (it would
    otherwise be a conflict, the first having moved the stream), and one event is stored."""
    command, log = logged(metadata())
    twice = [AppendRequest(account_id, [write("Thing-1", 0, 1)], command, log) for _ in range(2)]
    first, second = await EventStore().append_batch(pool, twice)
    assert isinstance(first, AppendResult) and first.revisions == {"Thing-1": 1}
    assert isinstance(second, CommandAlreadyLogged), f"not answered as a duplicate: {second!r}"
    assert await revisions(pool, account_id, "Thing-1") == [1]
    assert await counter(pool, account_id, "Thing") == 1
    # A retry is answered from the log: the first's result.
    assert await pool.fetchval(
        "SELECT result FROM command_log WHERE account_id = $1 AND command_id = $2",
        account_id,
        command.command_id,
    ) == {"Done": str(command.command_id), "Positions": {"Thing": 1}}


async def test_a_refused_whole_batch_of_one_account_is_retried_in_arrival_order(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """A batch of one account's appends that the server refuses whole (one payload Postgres cannot
    store) is sent again append by append, one after another in the order they came (each expects
    the revision the one before it left, so any other order is a conflict); each caller gets its
    own answer, only the bad one's an error."""
    store = EventStore(lanes=1)
    sends: list[str] = []  # "start <text>" / "end <text>" of each send of a single append
    batches: list[int] = []
    sent = asyncio.Event()
    send = store.append_batch

    async def watched(executor: Any, requests: list[AppendRequest]) -> Any:
        batches.append(len(requests))
        sent.set()
        text = requests[0].writes[0].events[0].payload.get("Text") if len(requests) == 1 else None
        sends.append(f"start {text}")
        try:
            return await send(executor, requests)
        finally:
            sends.append(f"end {text}")

    store.append_batch = watched  # type: ignore[method-assign]

    def thing(expected: int, text: str, stream_id: str = "Thing-1") -> list[StreamWrite]:
        return [StreamWrite(stream_id, "Thing", expected, [PendingEvent("Happened", {"Text": text})])]

    texts = ["a", "b", "nul \u0000", "c", "d"]
    writes = [thing(0, "a"), thing(1, "b"), thing(0, texts[2], "Bad-1"), thing(2, "c"), thing(3, "d")]
    async with tenant_transaction(pool, account_id) as connection:
        # Holds the account's Blocker counter: the lane's next batch waits for this transaction.
        await store.append(connection, account_id, [write("Blocker-1", 0, 1, "Blocker")], metadata())
        sent.clear()
        blocked = asyncio.ensure_future(
            store.append(pool, account_id, [write("Blocker-2", 0, 1, "Blocker")], metadata())
        )
        await sent.wait()
        tries = [asyncio.ensure_future(store.append(pool, account_id, w, metadata())) for w in writes]
        await queued(store, pool, len(tries))
    await blocked
    outcomes = await asyncio.gather(*tries, return_exceptions=True)

    assert batches[-6:] == [5, 1, 1, 1, 1, 1], f"the appends did not ride in one batch: {batches}"
    assert sends[-10:] == [f"{step} {text}" for text in texts for step in ("start", "end")], (
        "the account's appends were not sent again one after another in arrival order"
    )
    assert isinstance(outcomes[2], asyncpg.UntranslatableCharacterError)
    good = [o for n, o in enumerate(outcomes) if n != 2]
    assert all(isinstance(o, AppendResult) for o in good), good
    assert [o.revisions for o in good if isinstance(o, AppendResult)] == [
        {"Thing-1": n} for n in (1, 2, 3, 4)
    ]
    assert [o.positions for o in good if isinstance(o, AppendResult)] == [{"Thing": n} for n in (1, 2, 3, 4)]
    rows = await pool.fetch(
        "SELECT stream_revision, sequence_number, payload->>'Text' AS text FROM events "
        "WHERE account_id = $1 AND stream_type = 'Thing' ORDER BY sequence_number",
        account_id,
    )
    assert [(r["stream_revision"], r["sequence_number"], r["text"]) for r in rows] == [
        (1, 1, "a"),
        (2, 2, "b"),
        (3, 3, "c"),
        (4, 4, "d"),
    ]
    assert await stream_revision(pool, account_id, "Bad-1") is None
    assert await empty_rows(pool, account_id) == []


def logged(command: CommandMetadata) -> tuple[CommandMetadata, CommandLogEntry]:
    return command, CommandLogEntry("Do", b"h", {"Done": str(command.command_id)})


async def empty_rows(pool: asyncpg.Pool[Any], account_id: UUID) -> list[str]:
    """Streams at revision 0 and counters at 0: placeholders a batch should never leave behind."""
    rows = await pool.fetch(
        "SELECT stream_id AS name FROM streams WHERE account_id = $1 AND revision = 0 "
        "UNION ALL SELECT stream_type FROM stream_sequences WHERE account_id = $1 AND last_sequence = 0",
        account_id,
    )
    return [row["name"] for row in rows]


async def test_a_tenant_session_may_delete_only_empty_streams_and_counters(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """Migration 0020 lets the tenant role delete placeholders (revision 0, last sequence 0) and
    nothing else: a tenant-scoped session (RLS on, as the API's) cannot drop a stream with events
    nor reset a counter by deleting it."""
    await EventStore().append(pool, account_id, [write("Thing-1", 0, 2)], metadata())
    async with tenant_transaction(pool, account_id) as connection:
        streams = "DELETE FROM streams WHERE account_id = $1 AND stream_id = $2"
        counters = "DELETE FROM stream_sequences WHERE account_id = $1 AND stream_type = $2"
        assert await connection.execute(streams, account_id, "Thing-1") == "DELETE 0"
        assert await connection.execute(counters, account_id, "Thing") == "DELETE 0"
        # A placeholder, though, it may delete (as erp_append_batch does with those left empty).
        await connection.execute("INSERT INTO streams VALUES ($1, 'Empty-1', 'Empty', 0)", account_id)
        await connection.execute(
            "INSERT INTO stream_sequences (account_id, stream_type, last_sequence) VALUES ($1, 'Empty', 0)",
            account_id,
        )
        assert await connection.execute(streams, account_id, "Empty-1") == "DELETE 1"
        assert await connection.execute(counters, account_id, "Empty") == "DELETE 1"
    assert await stream_revision(pool, account_id, "Thing-1") == 2
    assert await counter(pool, account_id, "Thing") == 2
    assert await revisions(pool, account_id, "Thing-1") == [1, 2]


async def test_an_accounts_appends_in_one_batch_run_in_arrival_order_each_answered_alone(
    pool: asyncpg.Pool[Any],
) -> None:
    """One statement, two accounts with several appends each: each append sees the ones before it
    (a stale revision because of an earlier one is a conflict; expecting the revision it left
    succeeds), a refused one leaves nothing (not even the stream or counter it would have made),
    a second append with a logged command id is a duplicate, and the numbers are consecutive."""
    store = EventStore()
    x, y = await accounts(pool, 2)
    await store.append(pool, x, [write("Thing-1", 0, 1)], metadata())
    command, log = logged(metadata())
    refused_first, log_r = logged(metadata())
    plan: list[tuple[AppendRequest, str]] = [
        (request(x, write("Thing-1", 1, 2)), "ok"),  # Thing-1 -> 3
        (request(y, write("Thing-1", 0, 1)), "ok"),
        (request(x, write("Thing-1", 1, 1)), "conflict"),  # stale: the append before moved it
        (request(x, write("Thing-1", 3, 1)), "ok"),  # expects what the first left -> 4
        (request(x, write("Thing-2", 0), write("Thing-1", 3)), "conflict"),  # a pair, one stale
        (request(y, write("Thing-1", 0, 1)), "conflict"),  # made by y's append before
        (request(x, write("Thing-2", 0), write("Other-1", 0, 2, "Other")), "ok"),
        (request(x, write("Ghost-1", 3, 1, "Ghost")), "conflict"),  # a stream, a type that are not
        (AppendRequest(x, [write("Thing-3", 0)], command, log), "ok"),
        (AppendRequest(x, [write("Thing-4", 0)], command, log), "duplicate"),  # same command id
        (AppendRequest(x, [write("Thing-1", 1)], refused_first, log_r), "conflict"),
        (AppendRequest(x, [write("Thing-5", 0)], refused_first, log_r), "ok"),  # the first wrote nothing
        (request(x, write("Thing-1", 4, 1), write("Thing-6", 0, 1)), "ok"),
        (request(y, write("Thing-1", 1, 2)), "ok"),
    ]
    outcomes = await store.append_batch(pool, [r for r, _ in plan])

    kinds = {AppendResult: "ok", ConcurrencyConflict: "conflict", CommandAlreadyLogged: "duplicate"}
    assert [kinds[type(o)] for o in outcomes] == [answer for _, answer in plan]
    results = [o for o in outcomes if isinstance(o, AppendResult)]
    assert [r.revisions for r in results] == [
        {"Thing-1": 3},
        {"Thing-1": 1},
        {"Thing-1": 4},
        {"Thing-2": 1, "Other-1": 2},
        {"Thing-3": 1},
        {"Thing-5": 1},
        {"Thing-1": 5, "Thing-6": 1},
        {"Thing-1": 3},
    ]
    assert [r.positions for r in results] == [
        {"Thing": 3},
        {"Thing": 1},
        {"Thing": 4},
        {"Thing": 5, "Other": 2},
        {"Thing": 6},
        {"Thing": 7},
        {"Thing": 9},
        {"Thing": 3},
    ]
    stale = outcomes[2]
    assert isinstance(stale, ConcurrencyConflict)
    assert (stale.stream_id, stale.expected, stale.actual) == ("Thing-1", 1, 3)
    ghost = outcomes[7]
    assert isinstance(ghost, ConcurrencyConflict) and (ghost.stream_id, ghost.actual) == ("Ghost-1", 0)

    assert await revisions(pool, x, "Thing-1") == [1, 2, 3, 4, 5]
    assert await revisions(pool, y, "Thing-1") == [1, 2, 3]
    for stream in ("Thing-2", "Thing-3", "Thing-5", "Thing-6"):
        assert await revisions(pool, x, stream) == [1], stream
    for stream in ("Thing-4", "Ghost-1"):
        assert await stream_revision(pool, x, stream) is None, f"a refused append left {stream}"
    assert await counter(pool, x, "Ghost") is None, "a refused append left a counter"
    assert await empty_rows(pool, x) == [] and await empty_rows(pool, y) == []
    assert await sequence_numbers(pool, x, "Thing") == list(range(1, 10))
    assert await sequence_numbers(pool, x, "Other") == [1, 2]
    assert await counter(pool, x, "Thing") == 9
    # The duplicate is answered from the log, as a retry would be: the first's result.
    entries = await pool.fetch("SELECT command_id, result FROM command_log WHERE account_id = $1", x)
    assert {row["command_id"]: row["result"] for row in entries} == {
        command.command_id: {"Done": str(command.command_id), "Positions": {"Thing": 6}},
        refused_first.command_id: {"Done": str(refused_first.command_id), "Positions": {"Thing": 7}},
    }
    # Every counter the batch advanced records its one (top-level) transaction.
    changed = "SELECT count(DISTINCT changed) FROM stream_sequences WHERE account_id = ANY($1)"
    assert await pool.fetchval(changed, [x, y]) == 1, "the batch's appends did not share one transaction"


async def test_many_writers_on_one_account_never_show_a_reader_a_gap_and_store_each_acknowledged_append_once(
    pool: asyncpg.Pool[Any],
) -> None:
    """Invariants 1-3 with an account's appends batched together: writers on one busy account (and
    two quiet ones) share a few hot streams across two stream types, append to pairs of them,
    race to create the same new streams, and race writers appending inside their own transactions
    (random delay before commit, some rolled back); the batched writers are two processes (two
    stores), so batches of one account race each other too. A polling reader per (account, stream type)
    only ever sees the next number: never one <= what it saw appearing later, never a gap. Each
    acknowledged append is stored exactly once, nothing refused is, revisions run 1..n per stream,
    no placeholder is left, no deadlock, and batches carried several appends of the busy account."""
    busy, *quiet = await accounts(pool, 3)
    types = ("Ticket", "Order")
    hot = [(f"{t}-hot{n}", t) for t in types for n in range(3)]
    stores = [EventStore(), EventStore()]
    deadlocks: list[BaseException] = []

    def watch(store: EventStore) -> None:
        send = store.append_batch

        async def watched(executor: Any, requests: Any) -> Any:
            try:
                return await send(executor, requests)
            except asyncpg.DeadlockDetectedError as error:
                deadlocks.append(error)
                raise

        store.append_batch = watched  # type: ignore[method-assign]

    for store in stores:
        watch(store)
    acknowledged: dict[UUID, list[str]] = {a: [] for a in (busy, *quiet)}
    refused = 0
    done = asyncio.Event()
    seen: dict[tuple[UUID, str], list[int]] = {(a, t): [] for a in (busy, *quiet) for t in types}
    gaps: list[str] = []

    async def revision_of(account_id: UUID, stream_id: str) -> int:
        return await stream_revision(pool, account_id, stream_id) or 0

    async def writes_for(account_id: UUID, rng: random.Random, token: str) -> list[StreamWrite]:
        picks: list[tuple[str, str]] = []
        kind = rng.random()
        if kind < 0.4:
            picks = [rng.choice(hot)]
        elif kind < 0.7:
            picks = rng.sample(hot, 2)
        else:
            new = f"{rng.choice(types)}-new{rng.randrange(30)}"  # several writers race for each
            picks = [(new, new.split("-")[0])]
            if kind > 0.85:
                picks.append(rng.choice(hot))
        chosen = []
        for stream_id, stream_type in picks:
            expected = await revision_of(account_id, stream_id)
            pending = [PendingEvent("Happened", {"Token": token, "N": n}) for n in range(rng.randint(1, 2))]
            chosen.append(StreamWrite(stream_id, stream_type, expected, pending))
        return chosen

    async def batched(w: int) -> None:
        nonlocal refused
        rng = random.Random(w)
        for j in range(20):
            account_id = busy if rng.random() < 0.8 else rng.choice(quiet)
            token = f"b{w}-{j}"
            try:
                writes = await writes_for(account_id, rng, token)
                await stores[w % 2].append(pool, account_id, writes, metadata())
            except ConcurrencyConflict:
                refused += 1
                continue
            acknowledged[account_id].append(token)

    async def direct(w: int) -> None:
        nonlocal refused
        rng = random.Random(1000 + w)
        for j in range(12):
            account_id = busy if rng.random() < 0.7 else rng.choice(quiet)
            token = f"d{w}-{j}"
            try:
                async with tenant_transaction(pool, account_id) as connection:
                    writes = await writes_for(account_id, rng, token)
                    await stores[0].append(connection, account_id, writes, metadata())
                    await asyncio.sleep(rng.uniform(0, 0.006))  # commit late, holding the counters
                    if rng.random() < 0.2:
                        raise _Rollback
            except (_Rollback, ConcurrencyConflict):
                refused += 1
                continue
            acknowledged[account_id].append(token)

    async def reader(account_id: UUID, stream_type: str) -> None:
        mine = seen[(account_id, stream_type)]
        async with pool.acquire() as connection:
            while True:
                finished = done.is_set()
                last = mine[-1] if mine else 0
                rows = await connection.fetch(
                    "SELECT sequence_number FROM events WHERE account_id = $1 AND stream_type = $2 "
                    "AND sequence_number > $3 ORDER BY sequence_number",
                    account_id,
                    stream_type,
                    last,
                )
                numbers = [int(row[0]) for row in rows]
                if numbers != list(range(last + 1, last + 1 + len(numbers))):
                    gaps.append(f"{stream_type} after {last}: {numbers[:5]}")
                mine += numbers
                behind = await connection.fetchval(
                    "SELECT count(*) FROM events WHERE account_id = $1 AND stream_type = $2 "
                    "AND sequence_number <= $3",
                    account_id,
                    stream_type,
                    mine[-1] if mine else 0,
                )
                if behind != len(mine):
                    gaps.append(f"{stream_type}: {behind} events <= {mine[-1]}, saw {len(mine)}")
                if finished:
                    return
                await asyncio.sleep(0)

    async def write_all() -> None:
        try:
            await asyncio.gather(*(batched(w) for w in range(32)), *(direct(w) for w in range(6)))
        finally:
            done.set()

    readers = [reader(a, t) for a, t in seen]
    await asyncio.wait_for(asyncio.gather(write_all(), *readers), 80)

    assert gaps == [], "a reader saw a gap, or an event appear behind what it had seen"
    assert deadlocks == []
    assert refused > 0, "no append was refused: the writers never raced"
    for account_id in (busy, *quiet):
        rows = await pool.fetch(
            "SELECT stream_id, stream_revision, payload->>'Token' AS token, payload->>'N' AS n "
            "FROM events WHERE account_id = $1",
            account_id,
        )
        events = [(row["stream_id"], row["token"], row["n"]) for row in rows]
        assert len(set(events)) == len(events), "an append's event stored twice"
        tokens = sorted({(row["stream_id"], row["token"]) for row in rows})
        per_append: dict[str, set[str]] = {}
        for stream_id, token in tokens:
            per_append.setdefault(token, set()).add(stream_id)
        lost_or_refused = "an acknowledged append lost, or a refused one stored"
        assert sorted(per_append) == sorted(acknowledged[account_id]), lost_or_refused
        by_stream: dict[str, list[int]] = {}
        for row in rows:
            by_stream.setdefault(row["stream_id"], []).append(row["stream_revision"])
        for stream_id, numbers in by_stream.items():
            assert sorted(numbers) == list(range(1, len(numbers) + 1)), stream_id
            assert await stream_revision(pool, account_id, stream_id) == len(numbers)
        for stream_type in types:
            assert seen[(account_id, stream_type)] == await sequence_numbers(pool, account_id, stream_type)
            assert await counter(pool, account_id, stream_type) == len(seen[(account_id, stream_type)])
        assert await empty_rows(pool, account_id) == []
    assert len(acknowledged[busy]) > 100
    # Several of the busy account's appends shared a transaction (appends without a subtransaction
    # store their events under the batch's own xid).
    shared = await pool.fetchval(
        "SELECT max(n) FROM (SELECT count(DISTINCT command_id) AS n FROM events "
        "WHERE account_id = $1 GROUP BY xmin::text) AS per_transaction",
        busy,
    )
    assert shared > 1, "the busy account's appends never shared a batch"


async def test_retries_of_one_command_in_one_batch_are_all_answered_with_the_first_ones_result(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """Five concurrent tries of one PlaceOrder with one Idempotency-Key, held back until they ride in
    one batch: one order is placed, and every try answers what the first one did."""
    store = EventStore()
    service = CommandService(pool, store)
    batches: list[int] = []
    sent = asyncio.Event()
    send = store.append_batch

    async def counted(executor: Any, requests: Any) -> Any:
        batches.append(len(requests))
        sent.set()
        return await send(executor, requests)

    store.append_batch = counted  # type: ignore[method-assign]
    order_id, key = uuid.uuid4(), f"key-{uuid.uuid4()}"
    body = json.dumps(
        {
            "OrderId": str(order_id),
            "CustomerName": "Ada",
            "OrderLines": [{"ProductCode": "P", "Quantity": 1, "UnitPrice": "1.00"}],
        }
    ).encode()
    async with tenant_transaction(pool, account_id) as connection:
        # Holds the account's Blocker counter: the lane's next batch waits for this transaction.
        await store.append(connection, account_id, [write("Blocker-1", 0, 1, "Blocker")], metadata())
        batches.clear()
        sent.clear()
        blocked = asyncio.ensure_future(
            store.append(pool, account_id, [write("Blocker-2", 0, 1, "Blocker")], metadata())
        )
        await sent.wait()
        tries = [
            asyncio.ensure_future(service.execute(account_id, service.parse("PlaceOrder", body), key))
            for _ in range(5)
        ]
        await queued(store, pool, 5)  # every try has decided and waits in the lane
    await blocked
    answers = await asyncio.gather(*tries)
    assert batches[:2] == [1, 5], f"the tries did not ride in one batch: {batches}"
    assert all(answer == answers[0] for answer in answers)
    assert answers[0].revision == 1
    assert await revisions(pool, account_id, f"Order-{order_id}") == [1]
    assert await empty_rows(pool, account_id) == []


async def test_every_append_of_a_fenced_account_in_a_batch_is_refused_and_the_others_stored(
    pool: asyncpg.Pool[Any],
) -> None:
    fenced, other = await accounts(pool, 2)
    await pool.execute("SELECT erp_fence_account($1, $2, $3, $4)", fenced, LEAVING, "elsewhere", uuid.uuid4())
    batch = [
        request(fenced, write("Thing-1", 0)),
        request(other, write("Thing-1", 0)),
        request(fenced, write("Thing-2", 0)),
        request(other, write("Thing-1", 1)),
    ]
    outcomes = await EventStore().append_batch(pool, batch)
    assert [type(o) for o in outcomes] == [AccountElsewhere, AppendResult, AccountElsewhere, AppendResult]
    assert await revisions(pool, other, "Thing-1") == [1, 2]
    assert await stream_revision(pool, fenced, "Thing-1") is None
    assert await stream_revision(pool, fenced, "Thing-2") is None
    assert await empty_rows(pool, fenced) == []
