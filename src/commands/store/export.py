"""An account's events as JSON lines, upcast to today's shapes: what `erp accounts export` writes.

Each line is one event: `{"AccountId", "StreamType", "StreamId", "StreamRevision",
"SequenceNumber", "Name", "Payload", "CommitTime", "CommandId"}`, stream type by stream type (in
name order), each in SequenceNumber order. Events are decoded through the store's `EventFeed`,
so an event stored in an older shape is exported in today's, as every other reader sees it.

An export holds the events committed when it starts: each stream type's head is read first, and
its events are read up to that head, EXPORT_CHUNK at a time, each chunk in a short transaction of
its own (none holds the account's rows for the length of the export). Because SequenceNumbers
become visible strictly in order (`commands.store.event_store`), nothing at or below a head read
at the start is missed, and SequenceNumbers are gapless, so the heads' sum is the line count.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from commands.store.feed import EventFeed, Position, RecordedEvent
from tenancy.rls import tenant_transaction

EXPORT_CHUNK = 2000
"""Events read in one transaction: a few hundred kilobytes for ordinary events."""

_HEADS = """
SELECT stream_type, last_sequence FROM stream_sequences
WHERE account_id = $1 AND last_sequence > 0
ORDER BY stream_type
"""


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """What an export will write: each stream type's head when it started."""

    account_id: UUID
    heads: dict[str, int]

    @property
    def events(self) -> int:
        return sum(self.heads.values())


class _Line(msgspec.Struct, rename="pascal"):
    account_id: UUID
    stream_type: str
    stream_id: str
    stream_revision: int
    sequence_number: int
    name: str
    payload: dict[str, Any]
    commit_time: str
    command_id: UUID


_encoder = msgspec.json.Encoder()


def export_line(event: RecordedEvent) -> bytes:
    """One event's line, newline included."""
    line = _Line(
        event.account_id,
        event.stream_type,
        event.stream_id,
        event.stream_revision,
        event.sequence_number,
        event.name,
        event.payload,
        event.commit_time.isoformat(),
        event.command_id,
    )
    return _encoder.encode(line) + b"\n"


async def plan_export(pool: asyncpg.Pool[Any], account_id: UUID) -> ExportPlan:
    """The account's stream types and their heads now: what `export_events` will read."""
    async with tenant_transaction(pool, account_id) as connection:
        rows = await connection.fetch(_HEADS, account_id)
    return ExportPlan(account_id, {row["stream_type"]: row["last_sequence"] for row in rows})


async def export_events(
    pool: asyncpg.Pool[Any], feed: EventFeed, plan: ExportPlan, chunk: int = EXPORT_CHUNK
) -> AsyncIterator[list[RecordedEvent]]:
    """The planned events, upcast, `chunk` at most at a time, stream type by stream type."""
    for stream_type, head in plan.heads.items():
        position = 0
        while position < head:
            after = [Position(plan.account_id, stream_type, position)]
            async with tenant_transaction(pool, plan.account_id) as connection:
                events = await feed.after(connection, after, min(chunk, head - position))
            if not events:  # cannot happen (gapless, visible in order); never loop on it
                raise RuntimeError(f"{stream_type} events after {position} up to {head} were not found")
            yield events
            position = events[-1].sequence_number
