"""The one way stored events are read back: every reader decodes rows through an `EventFeed`.

Loading an aggregate's stream, the projectors' reads after their checkpoints and rebuilds all turn
stored rows into `RecordedEvent`s here, through the same upcasters, so an event stored in an older
shape reaches every reader in today's (eventsourcing's `Mapper`, Marten's event loader).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import asyncpg

from commands.store.upcasting import Upcasters


class Executor(Protocol):
    """A pool or a connection: the store runs each call as one statement on it."""

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]: ...


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
class Position:
    """How far a reader has read one (account, stream type): the last SequenceNumber it has seen."""

    account_id: UUID
    stream_type: str
    position: int


_STREAM = "SELECT * FROM erp_load_stream($1, $2, $3)"
# One index range scan per position: each (account, stream type) in SequenceNumber order.
_AFTER = """
SELECT e.account_id, e.stream_id, e.stream_type, e.stream_revision, e.sequence_number,
       e.payload_item_name, e.payload, e.schema_version, e.commit_time, e.command_id, e.trace_context
FROM unnest($1::uuid[], $2::text[], $3::bigint[]) AS c(account_id, stream_type, position)
CROSS JOIN LATERAL (
    SELECT * FROM events e
    WHERE e.account_id = c.account_id AND e.stream_type = c.stream_type
      AND e.sequence_number > c.position
    ORDER BY e.sequence_number
    LIMIT $4
) e
"""


class EventFeed:
    """Reads stored events and decodes them, upcast to today's shapes."""

    def __init__(self, upcasters: Upcasters | None = None) -> None:
        self.upcasters = upcasters or Upcasters()

    async def stream(
        self, executor: Executor, account_id: UUID, stream_id: str, after_revision: int = 0
    ) -> list[RecordedEvent]:
        """One stream's events after `after_revision`, oldest first (scoped to the account by RLS)."""
        rows = await executor.fetch(_STREAM, account_id, stream_id, after_revision)
        return self.decode_all(rows)

    async def after(
        self, executor: Executor, positions: Sequence[Position], limit: int
    ) -> list[RecordedEvent]:
        """Up to `limit` events after each position, in SequenceNumber order per (account, stream type)."""
        rows = await executor.fetch(
            _AFTER,
            [p.account_id for p in positions],
            [p.stream_type for p in positions],
            [p.position for p in positions],
            limit,
        )
        return self.decode_all(rows)

    def decode_all(self, rows: Sequence[asyncpg.Record]) -> list[RecordedEvent]:
        """Stored rows as events of today's schema, in order."""
        return [event for row in rows for event in self.decode(row)]

    def decode(self, row: asyncpg.Record) -> list[RecordedEvent]:
        """A stored row as events of today's schema: one, or several when an upcaster split it (they
        share its revision and SequenceNumber, so readers take them as one: applied together,
        counted once)."""
        return [
            RecordedEvent(
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
            for name, payload in self.upcasters.upcast(
                row["payload_item_name"], row["schema_version"], row["payload"]
            )
        ]
