"""The event store's contract, held against every implementation: the Postgres store and the memory one.

`EventStoreContract` says, through the interface only (`load` and `append`), what
DESIGN.md's "Event store invariants" promise of any store. Each subclass
provides a `Subject`: the store, an executor to call it with, fresh accounts and
a way to read the command log back. Every test checks exact revisions,
SequenceNumbers and payloads, so a store that breaks a rule fails it.
(The pattern is pyeventsourcing's tests/persistence.py.)

What needs the database itself (concurrent writers, row-level security, the
immutability triggers) stays in tests/integration/test_event_store.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from commands.store.event_store import (
    CommandAlreadyLogged,
    CommandLogEntry,
    CommandMetadata,
    ConcurrencyConflict,
    EventStore,
    PendingEvent,
    StreamWrite,
)
from commands.store.feed import Executor, RecordedEvent
from commands.unit_of_work import Store
from tests.conftest import make_account
from tests.memory_store import NO_SQL, LoggedCommand, MemoryEventStore

pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True)
class Subject:
    """One implementation under test, as a test case sees it."""

    store: Store
    executor: Executor
    new_account: Callable[[], Awaitable[UUID]]
    """A fresh account that has written nothing."""
    logged: Callable[[UUID, UUID], Awaitable[LoggedCommand | None]]
    """(account, command id) -> the command log's entry."""


def metadata(**trace_context: str) -> CommandMetadata:
    command_id = uuid.uuid4()
    return CommandMetadata(command_id, uuid.uuid4(), uuid.uuid4(), trace_context)


def write(stream_id: str, expected: int, count: int = 1, stream_type: str = "Thing") -> StreamWrite:
    name = stream_id.replace("-", "")
    return StreamWrite(stream_id, stream_type, expected, [PendingEvent(name, {"N": n}) for n in range(count)])


def entry(name: str = "DoThing") -> CommandLogEntry:
    return CommandLogEntry(name, b"request hash", {"StreamId": "Thing-1", "Revision": 1})


def rows(events: Sequence[RecordedEvent]) -> list[tuple[int, int, str, dict[str, Any]]]:
    """(StreamRevision, SequenceNumber, name, payload) per event."""
    return [(e.stream_revision, e.sequence_number, e.name, e.payload) for e in events]


class EventStoreContract:
    """The tests every event store must pass. A subclass overrides the `subject` fixture."""

    @pytest.fixture
    def subject(self) -> Subject:
        raise NotImplementedError("a store's test case provides its subject")

    async def append(
        self,
        s: Subject,
        account: UUID,
        *writes: StreamWrite,
        caused_by: CommandMetadata | None = None,
        log: CommandLogEntry | None = None,
    ) -> dict[str, int]:
        """Append, and answer the positions."""
        result = await s.store.append(s.executor, account, writes, caused_by or metadata(), log)
        return result.positions

    async def load(self, s: Subject, account: UUID, stream_id: str, after: int = 0) -> list[RecordedEvent]:
        return await s.store.load(s.executor, account, stream_id, after)

    async def numbers(self, s: Subject, account: UUID, *stream_ids: str) -> dict[str, list[int]]:
        """Each stream type's SequenceNumbers over the given streams, in order."""
        found: dict[str, list[int]] = {}
        for stream_id in stream_ids:
            for event in await self.load(s, account, stream_id):
                found.setdefault(event.stream_type, []).append(event.sequence_number)
        return {stream_type: sorted(numbers) for stream_type, numbers in found.items()}

    # --- 1. StreamRevision ---------------------------------------------------------------------

    async def test_a_new_stream_loads_empty(self, subject: Subject) -> None:
        account = await subject.new_account()
        assert await self.load(subject, account, "Thing-1") == []

    async def test_revisions_run_one_two_three_per_stream(self, subject: Subject) -> None:
        account = await subject.new_account()
        first = await subject.store.append(subject.executor, account, [write("Thing-1", 0, 2)], metadata())
        second = await subject.store.append(subject.executor, account, [write("Thing-1", 2, 1)], metadata())
        other = await subject.store.append(subject.executor, account, [write("Thing-2", 0, 1)], metadata())
        assert (first.revisions, second.revisions, other.revisions) == (
            {"Thing-1": 2},
            {"Thing-1": 3},
            {"Thing-2": 1},
        )
        assert rows(await self.load(subject, account, "Thing-1")) == [
            (1, 1, "Thing1", {"N": 0}),
            (2, 2, "Thing1", {"N": 1}),
            (3, 3, "Thing1", {"N": 0}),
        ]
        assert rows(await self.load(subject, account, "Thing-2")) == [(1, 4, "Thing2", {"N": 0})]

    @pytest.mark.parametrize(("expected", "actual"), [(1, 2), (3, 2), (0, 2)], ids=["behind", "ahead", "new"])
    async def test_an_expected_revision_that_is_not_the_streams_conflicts_and_writes_nothing(
        self, subject: Subject, expected: int, actual: int
    ) -> None:
        account = await subject.new_account()
        await self.append(subject, account, write("Thing-1", 0, 2))
        with pytest.raises(ConcurrencyConflict) as conflict:
            await self.append(subject, account, write("Thing-1", expected, 1))
        assert (conflict.value.stream_id, conflict.value.expected, conflict.value.actual) == (
            "Thing-1",
            expected,
            actual,
        )
        assert [e.stream_revision for e in await self.load(subject, account, "Thing-1")] == [1, 2]
        # Nothing was drawn either: the next append numbers on from 2.
        assert await self.append(subject, account, write("Thing-1", 2, 1)) == {"Thing": 3}

    async def test_a_stream_that_does_not_exist_conflicts_for_any_revision_but_zero(
        self, subject: Subject
    ) -> None:
        account = await subject.new_account()
        with pytest.raises(ConcurrencyConflict) as conflict:
            await self.append(subject, account, write("Thing-1", 1, 1))
        assert (conflict.value.expected, conflict.value.actual) == (1, 0)
        assert await self.load(subject, account, "Thing-1") == []
        assert await self.append(subject, account, write("Thing-1", 0, 1)) == {"Thing": 1}

    async def test_two_writes_to_one_stream_in_one_append_are_checked_one_after_the_other(
        self, subject: Subject
    ) -> None:
        account = await subject.new_account()
        with pytest.raises(ConcurrencyConflict) as conflict:
            await self.append(subject, account, write("Thing-1", 0, 1), write("Thing-1", 0, 1))
        assert (conflict.value.expected, conflict.value.actual) == (0, 1)
        assert await self.load(subject, account, "Thing-1") == []
        assert await self.append(subject, account, write("Thing-1", 0, 1), write("Thing-1", 1, 2)) == {
            "Thing": 3
        }
        assert [e.stream_revision for e in await self.load(subject, account, "Thing-1")] == [1, 2, 3]

    async def test_load_after_a_revision_returns_only_the_later_events(self, subject: Subject) -> None:
        account = await subject.new_account()
        await self.append(subject, account, write("Thing-1", 0, 4))
        loaded = {after: await self.load(subject, account, "Thing-1", after) for after in range(6)}
        assert {after: [e.stream_revision for e in events] for after, events in loaded.items()} == {
            0: [1, 2, 3, 4],
            1: [2, 3, 4],
            2: [3, 4],
            3: [4],
            4: [],
            5: [],
        }
        assert [e.payload for e in loaded[2]] == [{"N": 2}, {"N": 3}]

    # --- 2. SequenceNumber ---------------------------------------------------------------------

    async def test_sequence_numbers_run_one_two_three_per_stream_type_across_its_streams(
        self, subject: Subject
    ) -> None:
        account = await subject.new_account()
        positions = [
            await self.append(subject, account, write("Order-1", 0, 2, "Order")),
            await self.append(subject, account, write("Customer-1", 0, 1, "Customer")),
            await self.append(subject, account, write("Order-2", 0, 1, "Order")),
            await self.append(subject, account, write("Order-1", 2, 3, "Order")),
        ]
        assert positions == [{"Order": 2}, {"Customer": 1}, {"Order": 3}, {"Order": 6}]
        assert rows(await self.load(subject, account, "Order-1")) == [
            (1, 1, "Order1", {"N": 0}),
            (2, 2, "Order1", {"N": 1}),
            (3, 4, "Order1", {"N": 0}),
            (4, 5, "Order1", {"N": 1}),
            (5, 6, "Order1", {"N": 2}),
        ]
        assert await self.numbers(subject, account, "Order-1", "Order-2", "Customer-1") == {
            "Order": [1, 2, 3, 4, 5, 6],
            "Customer": [1],
        }

    async def test_one_append_numbers_each_stream_type_as_one_block_streams_in_id_order(
        self, subject: Subject
    ) -> None:
        account = await subject.new_account()
        await self.append(subject, account, write("Order-0", 0, 1, "Order"))
        positions = await self.append(
            subject,
            account,
            write("Order-b", 0, 2, "Order"),
            write("Customer-1", 0, 2, "Customer"),
            write("Order-a", 0, 1, "Order"),
        )
        assert positions == {"Order": 4, "Customer": 2}
        assert [e.sequence_number for e in await self.load(subject, account, "Order-a")] == [2]
        assert [e.sequence_number for e in await self.load(subject, account, "Order-b")] == [3, 4]
        assert [e.sequence_number for e in await self.load(subject, account, "Customer-1")] == [1, 2]

    # --- 3. Atomic multi-stream append ---------------------------------------------------------

    async def test_a_multi_stream_append_writes_every_stream_under_one_command(
        self, subject: Subject
    ) -> None:
        account = await subject.new_account()
        caused_by = metadata(traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        before = datetime.now(UTC)
        result = await subject.store.append(
            subject.executor,
            account,
            [write("Order-1", 0, 1, "Order"), write("Customer-1", 0, 2, "Customer")],
            caused_by,
        )
        assert (result.revisions, result.positions) == (
            {"Order-1": 1, "Customer-1": 2},
            {"Order": 1, "Customer": 2},
        )
        events = [
            *await self.load(subject, account, "Order-1"),
            *await self.load(subject, account, "Customer-1"),
        ]
        assert [(e.stream_id, e.stream_type, e.stream_revision) for e in events] == [
            ("Order-1", "Order", 1),
            ("Customer-1", "Customer", 1),
            ("Customer-1", "Customer", 2),
        ]
        assert {(e.account_id, e.command_id) for e in events} == {(account, caused_by.command_id)}
        assert all(e.trace_context == dict(caused_by.trace_context) for e in events)
        assert len({e.commit_time for e in events}) == 1
        assert events[0].commit_time >= before - timedelta(seconds=1)

    @pytest.mark.parametrize(
        "stale_id", ["A-order", "Z-order"], ids=["stale-sorted-first", "stale-sorted-last"]
    )
    async def test_a_conflict_on_one_stream_writes_nothing_on_the_others(
        self, subject: Subject, stale_id: str
    ) -> None:
        account = await subject.new_account()
        await self.append(subject, account, write(stale_id, 0, 1, "Order"))
        await self.append(subject, account, write("M-customer", 0, 1, "Customer"))
        with pytest.raises(ConcurrencyConflict) as conflict:
            await self.append(
                subject,
                account,
                write("B-customer", 0, 2, "Customer"),
                write(stale_id, 0, 1, "Order"),
                write("M-customer", 1, 1, "Customer"),
                write("Y-order", 0, 1, "Order"),
                log=entry(),
            )
        assert (conflict.value.stream_id, conflict.value.expected, conflict.value.actual) == (stale_id, 0, 1)
        assert await self.load(subject, account, "B-customer") == []
        assert await self.load(subject, account, "Y-order") == []
        assert [e.stream_revision for e in await self.load(subject, account, "M-customer")] == [1]
        assert [e.stream_revision for e in await self.load(subject, account, stale_id)] == [1]
        # No SequenceNumber was drawn: the next appends number on with no gap.
        assert await self.append(subject, account, write("B-customer", 0, 1, "Customer")) == {"Customer": 2}
        assert await self.append(subject, account, write("Y-order", 0, 1, "Order")) == {"Order": 2}

    # --- 4. Idempotency ------------------------------------------------------------------------

    async def test_a_logged_command_id_is_refused_and_appends_nothing(self, subject: Subject) -> None:
        account = await subject.new_account()
        caused_by = metadata()
        await self.append(subject, account, write("Thing-1", 0, 1), caused_by=caused_by, log=entry())
        with pytest.raises(CommandAlreadyLogged):
            await self.append(subject, account, write("Thing-2", 0, 2), caused_by=caused_by, log=entry())
        assert await self.load(subject, account, "Thing-2") == []
        assert await self.append(subject, account, write("Thing-2", 0, 1)) == {"Thing": 2}

    async def test_the_log_keeps_the_result_with_the_positions_the_append_was_given(
        self, subject: Subject
    ) -> None:
        account = await subject.new_account()
        caused_by = metadata()
        await self.append(subject, account, write("Order-0", 0, 2, "Order"))
        positions = await self.append(
            subject,
            account,
            write("Order-1", 0, 1, "Order"),
            write("Customer-1", 0, 1, "Customer"),
            caused_by=caused_by,
            log=CommandLogEntry("PlaceOrder", b"\x00hash", {"StreamId": "Order-1", "Revision": 1}),
        )
        assert positions == {"Order": 3, "Customer": 1}
        assert await subject.logged(account, caused_by.command_id) == LoggedCommand(
            "PlaceOrder",
            b"\x00hash",
            {"StreamId": "Order-1", "Revision": 1, "Positions": {"Order": 3, "Customer": 1}},
        )

    async def test_an_append_without_a_log_entry_logs_nothing(self, subject: Subject) -> None:
        account = await subject.new_account()
        caused_by = metadata()
        await self.append(subject, account, write("Thing-1", 0, 1), caused_by=caused_by)
        assert await subject.logged(account, caused_by.command_id) is None
        await self.append(subject, account, write("Thing-2", 0, 1), caused_by=caused_by, log=entry())
        assert [e.stream_revision for e in await self.load(subject, account, "Thing-2")] == [1]

    async def test_a_refused_append_logs_nothing_so_its_command_can_append_later(
        self, subject: Subject
    ) -> None:
        account = await subject.new_account()
        await self.append(subject, account, write("Thing-1", 0, 1))
        caused_by = metadata()
        with pytest.raises(ConcurrencyConflict):
            await self.append(subject, account, write("Thing-1", 0, 1), caused_by=caused_by, log=entry())
        assert await subject.logged(account, caused_by.command_id) is None
        assert await self.append(
            subject, account, write("Thing-1", 1, 1), caused_by=caused_by, log=entry()
        ) == {"Thing": 2}
        assert await subject.logged(account, caused_by.command_id) is not None

    # --- 5. Isolation --------------------------------------------------------------------------

    async def test_an_account_never_loads_another_accounts_stream(self, subject: Subject) -> None:
        a, b = await subject.new_account(), await subject.new_account()
        await self.append(subject, a, write("Thing-1", 0, 2))
        assert await self.load(subject, b, "Thing-1") == []
        with pytest.raises(ConcurrencyConflict):
            await self.append(subject, b, write("Thing-1", 2, 1))
        await self.append(subject, b, write("Thing-1", 0, 1))
        assert {e.account_id for e in await self.load(subject, b, "Thing-1")} == {b}
        assert [e.payload for e in await self.load(subject, a, "Thing-1")] == [{"N": 0}, {"N": 1}]
        assert [e.stream_revision for e in await self.load(subject, b, "Thing-1")] == [1]

    async def test_each_account_has_its_own_sequence_numbers(self, subject: Subject) -> None:
        a, b = await subject.new_account(), await subject.new_account()
        assert await self.append(subject, a, write("Thing-1", 0, 3)) == {"Thing": 3}
        assert await self.append(subject, b, write("Thing-9", 0, 2)) == {"Thing": 2}
        assert await self.append(subject, a, write("Thing-2", 0, 1)) == {"Thing": 4}
        assert await self.numbers(subject, a, "Thing-1", "Thing-2") == {"Thing": [1, 2, 3, 4]}
        assert await self.numbers(subject, b, "Thing-9") == {"Thing": [1, 2]}

    async def test_each_account_has_its_own_command_log(self, subject: Subject) -> None:
        a, b = await subject.new_account(), await subject.new_account()
        caused_by = metadata()
        await self.append(subject, a, write("Thing-1", 0, 1), caused_by=caused_by, log=entry())
        assert await subject.logged(b, caused_by.command_id) is None
        assert await self.append(subject, b, write("Thing-1", 0, 1), caused_by=caused_by, log=entry()) == {
            "Thing": 1
        }

    # --- payloads and empty appends ------------------------------------------------------------

    async def test_payloads_round_trip_as_json(self, subject: Subject) -> None:
        account = await subject.new_account()
        payload = {
            "Total": "20.15",
            "Tiny": "0.000000000000000000001",
            "Limit": Decimal("100.50"),
            "Quantity": 3,
            "Huge": 10**17,
            "Ratio": 0.25,
            "Paid": False,
            "Note": None,
            "Name": "Zo\u00eb \u2013 \u65e5\u672c \U0001f600",
            "Lines": [{"ProductCode": "P0", "UnitPrice": "10.00", "Tags": ["a", "b"]}, []],
            "Address": {"Kind": "Visit", "Lines": ("Main 1", "Leusden"), "Empty": {}},
        }
        pending = PendingEvent("Shaped", payload)
        await subject.store.append(
            subject.executor, account, [StreamWrite("Thing-1", "Thing", 0, [pending])], metadata()
        )
        [event] = await self.load(subject, account, "Thing-1")
        assert event.name == "Shaped"
        assert event.payload == {
            **payload,
            "Limit": "100.50",
            "Address": {"Kind": "Visit", "Lines": ["Main 1", "Leusden"], "Empty": {}},
        }
        assert isinstance(event.payload["Total"], str) and isinstance(event.payload["Limit"], str)

    async def test_a_loaded_payload_is_a_copy(self, subject: Subject) -> None:
        account = await subject.new_account()
        payload: dict[str, Any] = {"Lines": [{"Quantity": 1}]}
        await subject.store.append(
            subject.executor,
            account,
            [StreamWrite("Thing-1", "Thing", 0, [PendingEvent("Shaped", payload)])],
            metadata(),
        )
        payload["Lines"].append({"Quantity": 2})
        [first] = await self.load(subject, account, "Thing-1")
        first.payload["Lines"][0]["Quantity"] = 99
        [again] = await self.load(subject, account, "Thing-1")
        assert again.payload == {"Lines": [{"Quantity": 1}]}

    async def test_empty_writes_are_a_no_op(self, subject: Subject) -> None:
        account = await subject.new_account()
        caused_by = metadata()
        for writes in ([], [StreamWrite("Thing-1", "Thing", 5, [])]):
            result = await subject.store.append(subject.executor, account, writes, caused_by, entry())
            assert (result.revisions, result.positions) == ({}, {})
        assert await self.load(subject, account, "Thing-1") == []
        assert await subject.logged(account, caused_by.command_id) is None
        # A write with no events is not checked, even beside one that is.
        assert await self.append(
            subject, account, StreamWrite("Thing-2", "Thing", 7, []), write("Thing-1", 0, 1)
        ) == {"Thing": 1}


# --- the implementations ---------------------------------------------------------------------------


class TestMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def subject(self) -> Subject:
        store = MemoryEventStore()

        async def new_account() -> UUID:
            return uuid.uuid4()

        async def logged(account_id: UUID, command_id: UUID) -> LoggedCommand | None:
            return store.logged(account_id, command_id)

        return Subject(store, NO_SQL, new_account, logged)


def postgres(executor: Executor, pool: asyncpg.Pool[Any]) -> Subject:
    async def new_account() -> UUID:
        return await make_account(pool, "Event store contract")

    async def logged(account_id: UUID, command_id: UUID) -> LoggedCommand | None:
        row = await pool.fetchrow(
            "SELECT command_name, request_hash, result FROM command_log "
            "WHERE account_id = $1 AND command_id = $2",
            account_id,
            command_id,
        )
        return None if row is None else LoggedCommand(row["command_name"], row["request_hash"], row["result"])

    return Subject(EventStore(), executor, new_account, logged)


class TestPostgresEventStore(EventStoreContract):
    """On a pool: each append its own transaction, shared with concurrent ones (group commit)."""

    @pytest.fixture
    def subject(self, pool: asyncpg.Pool[Any]) -> Subject:
        return postgres(pool, pool)


class TestPostgresEventStoreOnAConnection(EventStoreContract):
    """On one connection: each call a statement of its own, no group commit."""

    @pytest.fixture
    async def subject(self, pool: asyncpg.Pool[Any]) -> AsyncIterator[Subject]:
        async with pool.acquire() as connection:
            yield postgres(connection, pool)
