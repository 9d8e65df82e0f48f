"""The event store: append to one or more streams of an account atomically, and load a stream.

Guarantees (DESIGN.md, invariants 1-3 and 6):

* StreamRevision runs 1, 2, 3, ... per stream. `append` checks every stream's
  expected revision against the `streams` row it locks, so a stale expectation
  raises `ConcurrencyConflict` and nothing is written.
* SequenceNumber runs 1, 2, 3, ... per (AccountId, StreamType). Numbers come
  from a counter row that stays locked until the appending transaction ends,
  so transactions of one (account, stream type) commit in sequence order and a
  reader that has seen N never later finds an event <= N.
* Everything in one `append` call commits or rolls back together.
* Events are never updated or deleted (a trigger refuses it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from commands.upcasting import Upcasters


class ConcurrencyConflict(Exception):
    """A stream's revision was not the one the writer expected."""

    def __init__(self, stream_id: str, expected: int, actual: int | None) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        found = "changed concurrently" if actual is None else f"is at revision {actual}"
        super().__init__(f"stream {stream_id} was expected at revision {expected} but {found}")


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event decided by an aggregate, not yet stored."""

    name: str
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StreamWrite:
    """New events for one stream, valid only if the stream is still at `expected_revision`."""

    stream_id: str
    stream_type: str
    expected_revision: int
    events: Sequence[PendingEvent]


@dataclass(frozen=True, slots=True)
class CommandMetadata:
    """Who caused an append: stored with every event it writes."""

    command_id: UUID
    correlation_id: UUID
    causation_id: UUID
    trace_context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as stored."""

    account_id: UUID
    stream_id: str
    stream_type: str
    stream_revision: int
    sequence_number: int
    name: str
    payload: dict[str, Any]
    commit_time: datetime
    command_id: UUID
    trace_context: dict[str, str]


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Each written stream's new revision and each stream type's last SequenceNumber."""

    revisions: dict[str, int]
    positions: dict[str, int]


_LOCK_STREAM = """
UPDATE streams SET revision = $3
WHERE account_id = $1 AND stream_id = $2 AND revision = $4
"""
_CREATE_STREAM = """
INSERT INTO streams (account_id, stream_id, stream_type, revision) VALUES ($1, $2, $3, $4)
ON CONFLICT (account_id, stream_id) DO NOTHING
"""
_STREAM_REVISION = "SELECT revision FROM streams WHERE account_id = $1 AND stream_id = $2"
_NEXT_SEQUENCES = """
INSERT INTO stream_sequences AS s (account_id, stream_type, last_sequence) VALUES ($1, $2, $3)
ON CONFLICT (account_id, stream_type)
DO UPDATE SET last_sequence = s.last_sequence + EXCLUDED.last_sequence
RETURNING last_sequence
"""
_INSERT_EVENTS = """
INSERT INTO events (account_id, stream_id, stream_revision, payload_item_name, payload,
                    stream_type, sequence_number, command_id, correlation_id, causation_id,
                    trace_context)
SELECT $1, e.stream_id, e.stream_revision, e.name, e.payload, e.stream_type, e.sequence_number,
       $2, $3, $4, $5
FROM unnest($6::text[], $7::int[], $8::text[], $9::jsonb[], $10::text[], $11::bigint[])
     AS e(stream_id, stream_revision, name, payload, stream_type, sequence_number)
"""
_LOAD_STREAM = """
SELECT account_id, stream_id, stream_type, stream_revision, sequence_number, payload_item_name,
       payload, commit_time, command_id, trace_context, schema_version
FROM events WHERE account_id = $1 AND stream_id = $2 AND stream_revision > $3
ORDER BY stream_revision
"""


class EventStore:
    """Appends and loads events on a connection the caller scoped to one account."""

    def __init__(self, upcasters: Upcasters | None = None) -> None:
        self._upcasters = upcasters or Upcasters()

    async def load(
        self,
        connection: asyncpg.Connection[Any],
        account_id: UUID,
        stream_id: str,
        after_revision: int = 0,
    ) -> list[RecordedEvent]:
        """The stream's events after `after_revision`, oldest first, upcast to today's schema."""
        rows = await connection.fetch(_LOAD_STREAM, account_id, stream_id, after_revision)
        return [self._recorded(row) for row in rows]

    async def append(
        self,
        connection: asyncpg.Connection[Any],
        account_id: UUID,
        writes: Sequence[StreamWrite],
        metadata: CommandMetadata,
    ) -> AppendResult:
        """Append all `writes` atomically; raise `ConcurrencyConflict` if any stream moved.

        Must run inside the caller's transaction, so the caller can add more
        (the command log) to the same commit.
        """
        writes = sorted((w for w in writes if w.events), key=lambda w: w.stream_id)
        if not writes:
            return AppendResult(revisions={}, positions={})
        for write in writes:
            await self._advance_stream(connection, account_id, write)

        counts: dict[str, int] = {}
        for write in writes:
            counts[write.stream_type] = counts.get(write.stream_type, 0) + len(write.events)
        positions: dict[str, int] = {}
        for stream_type in sorted(counts):  # a fixed lock order prevents deadlocks
            positions[stream_type] = await connection.fetchval(
                _NEXT_SEQUENCES, account_id, stream_type, counts[stream_type]
            )

        next_sequence = {t: positions[t] - counts[t] + 1 for t in counts}
        columns: tuple[list[Any], ...] = ([], [], [], [], [], [])
        revisions: dict[str, int] = {}
        for write in writes:
            for offset, pending in enumerate(write.events, start=1):
                sequence = next_sequence[write.stream_type]
                next_sequence[write.stream_type] = sequence + 1
                for column, value in zip(
                    columns,
                    (
                        write.stream_id,
                        write.expected_revision + offset,
                        pending.name,
                        pending.payload,
                        write.stream_type,
                        sequence,
                    ),
                    strict=True,
                ):
                    column.append(value)
            revisions[write.stream_id] = write.expected_revision + len(write.events)
        await connection.execute(
            _INSERT_EVENTS,
            account_id,
            metadata.command_id,
            metadata.correlation_id,
            metadata.causation_id,
            dict(metadata.trace_context),
            *columns,
        )
        return AppendResult(revisions=revisions, positions=positions)

    async def _advance_stream(
        self, connection: asyncpg.Connection[Any], account_id: UUID, write: StreamWrite
    ) -> None:
        new_revision = write.expected_revision + len(write.events)
        if write.expected_revision == 0:
            status = await connection.execute(
                _CREATE_STREAM, account_id, write.stream_id, write.stream_type, new_revision
            )
        else:
            status = await connection.execute(
                _LOCK_STREAM, account_id, write.stream_id, new_revision, write.expected_revision
            )
        if status.endswith(" 1"):
            return
        actual = await connection.fetchval(_STREAM_REVISION, account_id, write.stream_id)
        raise ConcurrencyConflict(write.stream_id, write.expected_revision, actual)

    def _recorded(self, row: asyncpg.Record) -> RecordedEvent:
        name, payload = self._upcasters.upcast(
            row["payload_item_name"], row["schema_version"], row["payload"]
        )
        return RecordedEvent(
            account_id=row["account_id"],
            stream_id=row["stream_id"],
            stream_type=row["stream_type"],
            stream_revision=row["stream_revision"],
            sequence_number=row["sequence_number"],
            name=name,
            payload=payload,
            commit_time=row["commit_time"],
            command_id=row["command_id"],
            trace_context=row["trace_context"],
        )
