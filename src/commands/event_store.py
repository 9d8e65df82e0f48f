"""The event store: append to one or more streams of an account atomically, and load a stream.

Guarantees (DESIGN.md, invariants 1-3 and 6):

* StreamRevision runs 1, 2, 3, ... per stream. `append` checks every stream's
  expected revision against the `streams` row it locks, so a stale expectation
  raises `ConcurrencyConflict` and nothing is written.

The work happens in SQL functions (migration 0002), one round trip per call,
each scoped to the account by row-level security.
* SequenceNumber runs 1, 2, 3, ... per (AccountId, StreamType). Numbers come
  from a counter row that stays locked until the appending transaction ends,
  so transactions of one (account, stream type) commit in sequence order and a
  reader that has seen N never later finds an event <= N.
* Everything in one `append` call commits or rolls back together.
* Events are never updated or deleted (a trigger refuses it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import asyncpg
from opentelemetry import trace

from commands.upcasting import Upcasters
from erp.metrics import EVENTS_APPENDED

tracer = trace.get_tracer("erp.event_store")


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


_LOAD_STREAM = "SELECT * FROM erp_load_stream($1, $2, $3)"
_APPEND = """
SELECT stream_type, last_sequence
FROM erp_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
"""
CONFLICT_SQLSTATE = "ER409"


class Executor(Protocol):
    """A pool or a connection: the store runs each call as one statement on it."""

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]: ...


@dataclass(frozen=True, slots=True)
class CommandLogEntry:
    """Makes an append idempotent: stored with it, keyed by the command id."""

    command_name: str
    request_hash: bytes
    result: Mapping[str, Any]
    """Recorded with the append; the store adds the `Positions` it assigned."""


class EventStore:
    """Appends and loads one account's events; row-level security scopes every call."""

    def __init__(self, upcasters: Upcasters | None = None) -> None:
        self._upcasters = upcasters or Upcasters()

    async def load(
        self, executor: Executor, account_id: UUID, stream_id: str, after_revision: int = 0
    ) -> list[RecordedEvent]:
        """The stream's events after `after_revision`, oldest first, upcast to today's schema."""
        rows = await executor.fetch(_LOAD_STREAM, account_id, stream_id, after_revision)
        return [self._recorded(row) for row in rows]

    async def append(
        self,
        executor: Executor,
        account_id: UUID,
        writes: Sequence[StreamWrite],
        metadata: CommandMetadata,
        log: CommandLogEntry | None = None,
    ) -> AppendResult:
        """Append all `writes` atomically; raise `ConcurrencyConflict` if any stream moved.

        One statement does it all (see migration 0002). On a pool it is its own
        transaction; on a connection inside a transaction it joins that one.
        """
        writes = sorted((w for w in writes if w.events), key=lambda w: w.stream_id)
        if not writes:
            return AppendResult(revisions={}, positions={})
        event_columns: tuple[list[Any], ...] = ([], [], [], [], [])
        for write in writes:
            for offset, pending in enumerate(write.events, start=1):
                for column, value in zip(
                    event_columns,
                    (
                        write.stream_id,
                        write.expected_revision + offset,
                        write.stream_type,
                        pending.name,
                        pending.payload,
                    ),
                    strict=True,
                ):
                    column.append(value)
        with tracer.start_as_current_span(
            "append",
            attributes={
                "erp.account_id": str(account_id),
                "erp.streams": [w.stream_id for w in writes],
                "erp.events": sum(len(w.events) for w in writes),
            },
        ) as span:
            rows = await self._append(executor, account_id, writes, metadata, log, event_columns)
            positions = {row["stream_type"]: row["last_sequence"] for row in rows}
            for stream_type, position in positions.items():
                span.set_attribute(f"erp.position.{stream_type}", position)
            for write in writes:
                EVENTS_APPENDED.add(len(write.events), {"stream_type": write.stream_type})
        return AppendResult(
            revisions={w.stream_id: w.expected_revision + len(w.events) for w in writes},
            positions=positions,
        )

    async def _append(
        self,
        executor: Executor,
        account_id: UUID,
        writes: Sequence[StreamWrite],
        metadata: CommandMetadata,
        log: CommandLogEntry | None,
        event_columns: tuple[list[Any], ...],
    ) -> list[asyncpg.Record]:
        try:
            return await executor.fetch(
                _APPEND,
                account_id,
                [w.stream_id for w in writes],
                [w.stream_type for w in writes],
                [w.expected_revision for w in writes],
                [len(w.events) for w in writes],
                *event_columns,
                metadata.command_id,
                metadata.correlation_id,
                metadata.causation_id,
                dict(metadata.trace_context),
                log.command_name if log else None,
                log.request_hash if log else None,
                dict(log.result) if log else None,
            )
        except asyncpg.PostgresError as error:
            if error.sqlstate != CONFLICT_SQLSTATE:
                raise
            detail = json.loads(error.detail or "{}")
            raise ConcurrencyConflict(
                detail.get("StreamId", "?"), detail.get("Expected", -1), detail.get("Actual")
            ) from None

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
