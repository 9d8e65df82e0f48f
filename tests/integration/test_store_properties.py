"""The event store against a model of itself: generated append sequences on the real Postgres.

Each example is a fresh account and a random sequence of appends to a few
streams of two stream types, one to three streams per append, with expected
revisions that are sometimes stale (behind) or ahead. A plain in-memory model
says what must happen; after every append the store must agree with it, and so
must the tests' in-memory store (tests/memory_store.py), given the same appends:

* an append whose every expected revision is current writes all its events:
  each stream's revisions run on from where they were, and each stream type's
  SequenceNumbers run on as one contiguous block after the last ones;
* an append with any other expected revision raises ConcurrencyConflict and
  writes nothing at all, counters included;
* what `load` returns is exactly what was appended, in order;
* the memory store answers and loads exactly what the Postgres store does.

Hypothesis is derandomized and bounded (a fixed number of examples); async
examples run on the session's event loop through pytest-asyncio.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.store.event_store import (
    CommandMetadata,
    ConcurrencyConflict,
    EventStore,
    PendingEvent,
    StreamWrite,
)
from commands.store.feed import RecordedEvent
from tests.conftest import make_account
from tests.memory_store import NO_SQL, MemoryEventStore

pytestmark = pytest.mark.timeout(120)

STREAMS = {"Alpha-1": "Alpha", "Alpha-2": "Alpha", "Beta-1": "Beta"}


@dataclass(frozen=True)
class Write:
    stream_id: str
    offset: int
    """How far the expected revision is from the stream's real one: 0 is current, < 0 stale, > 0 ahead."""
    events: int


@dataclass
class Model:
    """What the store must hold: each stream's events (as names) and each stream type's last number."""

    streams: dict[str, list[str]] = field(default_factory=dict)
    sequences: dict[str, int] = field(default_factory=dict)

    def revision(self, stream_id: str) -> int:
        return len(self.streams.get(stream_id, []))


WRITE = st.builds(
    Write,
    stream_id=st.sampled_from(sorted(STREAMS)),
    offset=st.sampled_from([0, 0, 0, 0, -1, -2, 1]),
    events=st.integers(min_value=0, max_value=3),
)
APPEND = st.lists(WRITE, min_size=1, max_size=3, unique_by=lambda w: w.stream_id)


def shown(event: RecordedEvent) -> tuple[Any, ...]:
    """An event without its commit time (which the two stores take from their own clocks)."""
    return (
        event.account_id,
        event.stream_id,
        event.stream_type,
        event.stream_revision,
        event.sequence_number,
        event.name,
        event.payload,
        event.command_id,
        event.trace_context,
    )


def metadata() -> CommandMetadata:
    command_id = uuid.uuid4()
    return CommandMetadata(command_id, command_id, command_id)


async def stored_sequences(pool: asyncpg.Pool[Any], account_id: UUID) -> dict[str, list[int]]:
    rows = await pool.fetch(
        "SELECT stream_type, sequence_number FROM events WHERE account_id = $1 "
        "ORDER BY stream_type, sequence_number",
        account_id,
    )
    numbers: dict[str, list[int]] = {}
    for row in rows:
        numbers.setdefault(row["stream_type"], []).append(int(row["sequence_number"]))
    return numbers


async def counters(pool: asyncpg.Pool[Any], account_id: UUID) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT stream_type, last_sequence FROM stream_sequences WHERE account_id = $1", account_id
    )
    return {row["stream_type"]: int(row["last_sequence"]) for row in rows}


@settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(appends=st.lists(APPEND, min_size=1, max_size=15))
async def test_the_store_always_equals_its_model(pool: asyncpg.Pool[Any], appends: list[list[Write]]) -> None:
    store = EventStore()
    memory = MemoryEventStore()
    account_id = await make_account(pool, "Store properties")
    model = Model()
    for number, append in enumerate(appends, start=1):
        writes = [
            StreamWrite(
                stream_id=w.stream_id,
                stream_type=STREAMS[w.stream_id],
                expected_revision=max(0, model.revision(w.stream_id) + w.offset),
                events=[PendingEvent(f"Append{number}", {"Event": n}) for n in range(1, w.events + 1)],
            )
            for w in append
        ]
        # Writes without events are not appended, so neither are their expected revisions checked.
        counted = [w for w in writes if w.events]
        stale = [w for w in counted if w.expected_revision != model.revision(w.stream_id)]
        before = (await stored_sequences(pool, account_id), await counters(pool, account_id))
        caused_by = metadata()

        if stale:
            with pytest.raises(ConcurrencyConflict) as conflict:
                await store.append(pool, account_id, writes, caused_by)
            named = {w.stream_id: w for w in stale}
            assert conflict.value.stream_id in named, (conflict.value, stale)
            assert conflict.value.expected == named[conflict.value.stream_id].expected_revision
            assert conflict.value.actual in (None, model.revision(conflict.value.stream_id))
            with pytest.raises(ConcurrencyConflict) as same:
                await memory.append(NO_SQL, account_id, writes, caused_by)
            assert (same.value.stream_id, same.value.expected) == (
                conflict.value.stream_id,
                conflict.value.expected,
            )
            assert conflict.value.actual in (None, same.value.actual)
            after = (await stored_sequences(pool, account_id), await counters(pool, account_id))
            assert after == before, f"append {number} conflicted but changed the store"
        else:
            result = await store.append(pool, account_id, writes, caused_by)
            assert await memory.append(NO_SQL, account_id, writes, caused_by) == result
            for w in counted:
                model.streams.setdefault(w.stream_id, []).extend(e.name for e in w.events)
            written_types = {w.stream_type for w in counted}
            new = {t: sum(len(w.events) for w in counted if w.stream_type == t) for t in written_types}
            first = {t: model.sequences.get(t, 0) + 1 for t in written_types}
            for t, count in new.items():
                model.sequences[t] = model.sequences.get(t, 0) + count
            assert result.revisions == {w.stream_id: model.revision(w.stream_id) for w in counted}
            assert result.positions == {t: model.sequences[t] for t in written_types}
            rows = await pool.fetch(
                "SELECT stream_type, sequence_number FROM events WHERE account_id = $1 AND command_id = $2",
                account_id,
                caused_by.command_id,
            )
            # This append's events of each type are one block, right after the numbers before it.
            for t in written_types:
                block = sorted(int(r["sequence_number"]) for r in rows if r["stream_type"] == t)
                assert block == list(range(first[t], model.sequences[t] + 1)), (t, block)

        # The whole store, every time: revisions, loaded events, SequenceNumbers and counters.
        for stream_id in STREAMS:
            loaded = await store.load(pool, account_id, stream_id)
            assert [e.stream_revision for e in loaded] == list(range(1, model.revision(stream_id) + 1))
            assert [e.name for e in loaded] == model.streams.get(stream_id, []), stream_id
            assert all(e.stream_type == STREAMS[stream_id] for e in loaded)
            assert [shown(e) for e in await memory.load(NO_SQL, account_id, stream_id)] == [
                shown(e) for e in loaded
            ], stream_id
            revision = await pool.fetchval(
                "SELECT revision FROM streams WHERE account_id = $1 AND stream_id = $2", account_id, stream_id
            )
            assert (revision or 0) == model.revision(stream_id), stream_id
        assert await stored_sequences(pool, account_id) == {
            t: list(range(1, n + 1)) for t, n in model.sequences.items()
        }
        assert {t: n for t, n in (await counters(pool, account_id)).items() if n} == model.sequences
