"""The one way stored events are read back: every reader decodes rows through an `EventFeed`.

Loading an aggregate's stream, the projectors' reads after their checkpoints and rebuilds all turn
stored rows into `RecordedEvent`s here, through the same upcasters, so an event stored in an older
shape reaches every reader in today's (eventsourcing's `Mapper`, Marten's event loader). Sealed
personal fields are opened first (`commands.store.sealing`): a reader fetches the keys its rows
need (`keys_for`, one query) and decodes with them; an erased subject's fields read as null.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import asyncpg

from commands.store.sealing import NO_KEYS, SEALED, Keys, PersonalData, Sealing
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
    undecodable: str | None = None
    """Why the upcasters could not read it (only from a `lenient` read): it is then as stored."""


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

    def __init__(self, upcasters: Upcasters | None = None, sealing: Sealing | None = None) -> None:
        self.upcasters = upcasters or Upcasters()
        self.sealing = sealing or Sealing(PersonalData())
        """Opens sealed personal fields (every feed can: without a model's, it seals nothing)."""

    async def keys_for(
        self, executor: Executor, rows: Sequence[asyncpg.Record], scope: UUID | None = None
    ) -> Keys:
        """The subjects' keys that `rows` need to be decoded (`scope`: rows of that one account)."""
        return await self.sealing.keys_for(executor, rows, scope)

    async def stream(
        self, executor: Executor, account_id: UUID, stream_id: str, after_revision: int = 0
    ) -> list[RecordedEvent]:
        """One stream's events after `after_revision`, oldest first (scoped to the account by RLS)."""
        rows = await executor.fetch(_STREAM, account_id, stream_id, after_revision)
        return self.decode_all(rows, await self.keys_for(executor, rows, account_id))

    async def after(
        self, executor: Executor, positions: Sequence[Position], limit: int, *, lenient: bool = False
    ) -> list[RecordedEvent]:
        """Up to `limit` events after each position, in SequenceNumber order per (account, stream
        type). `lenient`: an event the upcasters fail on comes as stored, marked `undecodable` (the
        projector parks it), rather than raising."""
        rows = await executor.fetch(
            _AFTER,
            [p.account_id for p in positions],
            [p.stream_type for p in positions],
            [p.position for p in positions],
            limit,
        )
        return self.decode_all(rows, await self.keys_for(executor, rows), lenient=lenient)

    def decode_all(
        self, rows: Sequence[asyncpg.Record], keys: Keys = NO_KEYS, *, lenient: bool = False
    ) -> list[RecordedEvent]:
        """Stored rows as events of today's schema, in order (`keys`: those `keys_for` fetched)."""
        return [event for row in rows for event in self.decode(row, keys, lenient=lenient)]

    @staticmethod
    def payload(row: asyncpg.Record, keys: Keys = NO_KEYS) -> dict[str, Any]:
        """The row's payload as stored, its sealed personal fields opened (null where erased)."""
        payload: dict[str, Any] = row["payload"]
        if SEALED in payload:
            return Sealing.open(row["account_id"], row["stream_id"], payload, keys)
        return payload

    def decode(
        self, row: asyncpg.Record, keys: Keys = NO_KEYS, *, lenient: bool = False
    ) -> list[RecordedEvent]:
        """A stored row as events of today's schema: one, or several when an upcaster split it (they
        share its revision and SequenceNumber, so readers take them as one: applied together,
        counted once). An upcaster that fails raises, unless `lenient`: the row then comes as
        stored, marked `undecodable` with why."""
        name, version = row["payload_item_name"], row["schema_version"]
        try:
            shapes = self.upcasters.upcast(name, version, self.payload(row, keys))
        except Exception as error:
            if not lenient:
                raise
            why = f"reading {name} v{version} in today's shape failed: {type(error).__name__}: {error}"
            return [self._event(row, name, row["payload"], why)]
        return [self._event(row, name, payload) for name, payload in shapes]

    @staticmethod
    def _event(
        row: asyncpg.Record, name: str, payload: dict[str, Any], undecodable: str | None = None
    ) -> RecordedEvent:
        return RecordedEvent(  # positional: a replay makes millions (keywords cost a fifth more)
            row["account_id"],
            row["stream_id"],
            row["stream_type"],
            row["stream_revision"],
            row["sequence_number"],
            name,
            payload,
            row["commit_time"],
            row["command_id"],
            row["trace_context"],
            undecodable,
        )
