"""Poison events, as a sequenced dead-letter queue: an event its read model refuses is parked, and
it holds back the later events of its own stream in that projection while other streams go on.

A stream's events change one row, in order: applied past a refused event, a later one would leave
the row in a state no sequence of the stream's events gives (an order shipped that was never
placed). So the projector parks a refused event (`held_behind` NULL, with the database's reason)
and every later event of its stream as held behind it, moving its checkpoint on as if they were
applied: the rest of the account, and every other account, is not held up.

Operators list what is parked (`parked`), and once the cause is fixed (a migration, a fix of the
model) retry it (`release`): the refused event and those held behind it are applied in order, each
in a savepoint, up to the first the read model still refuses, which stays parked with the rest
behind it. Or they skip the refused event: the read model never shows it, and the held ones are
applied after it. A release locks the pair's checkpoint first (waiting out a batch that holds it),
so the projector never parks an event behind a stream being released, and the stream's events are
applied in order: the parked ones (all before the checkpoint) first, the newer ones after.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from commands.store.feed import EventFeed, Position, RecordedEvent
from queries.projection import Projection
from queries.projector.checkpoints import Checkpoints

REFUSED_BY_READ_MODEL = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)
"""What the database answers for an event its read model cannot hold: park it, do not retry it."""

Parked = tuple[RecordedEvent, str, int | None]
"""An event set aside: the event, why, and the SequenceNumber of the refused event it is held
behind (None: refused itself)."""

_HELD = """
SELECT p.account_id, p.stream_id, min(p.sequence_number) AS first
FROM unnest($2::uuid[], $3::text[]) AS w(account_id, stream_type)
JOIN parked_events p
  ON p.projection = $1 AND p.account_id = w.account_id AND p.stream_type = w.stream_type
GROUP BY p.account_id, p.stream_id
"""
_PARK = """
INSERT INTO parked_events (projection, account_id, stream_type, sequence_number, stream_id,
                           payload_item_name, reason, held_behind)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING
"""
_LIST = """
SELECT projection, account_id, stream_type, sequence_number, stream_id, payload_item_name, reason,
       held_behind, parked_at
FROM parked_events
WHERE ($1::text IS NULL OR projection = $1) AND ($2::uuid IS NULL OR account_id = $2)
ORDER BY projection, account_id, stream_id, sequence_number
LIMIT $3
"""
_COUNT = """
SELECT count(*) FILTER (WHERE held_behind IS NULL) AS refused,
       count(*) FILTER (WHERE held_behind IS NOT NULL) AS held
FROM parked_events WHERE projection = $1 AND ($2::uuid IS NULL OR account_id = $2)
"""
_LOCK_CHECKPOINT = """
SELECT position FROM projection_checkpoints
WHERE projection = $1 AND account_id = $2 AND stream_type = $3
FOR UPDATE
"""
_OF_STREAM = """
SELECT stream_type, sequence_number, reason, held_behind FROM parked_events
WHERE projection = $1 AND account_id = $2 AND stream_id = $3
ORDER BY sequence_number
"""
_EVENTS = """
SELECT account_id, stream_id, stream_type, stream_revision, sequence_number, payload_item_name,
       payload, schema_version, commit_time, command_id, trace_context
FROM events
WHERE account_id = $1 AND stream_type = $2 AND sequence_number = ANY($3::bigint[])
ORDER BY sequence_number
"""
_UNPARK = """
DELETE FROM parked_events
WHERE projection = $1 AND account_id = $2 AND stream_type = $3 AND sequence_number = ANY($4::bigint[])
"""
_REPARK = """
UPDATE parked_events SET reason = CASE WHEN sequence_number = $4 THEN $5 ELSE reason END,
                         held_behind = CASE WHEN sequence_number = $4 THEN NULL ELSE $4 END
WHERE projection = $1 AND account_id = $2 AND stream_type = $3 AND sequence_number >= $4
"""


@dataclass(frozen=True, slots=True)
class ParkedEvent:
    """One parked event as operators see it."""

    projection: str
    account_id: UUID
    stream_type: str
    sequence_number: int
    stream_id: str
    event: str
    reason: str
    held_behind: int | None
    """None: the read model refused this event; else the refused event's SequenceNumber it waits for."""
    parked_at: datetime


@dataclass(frozen=True, slots=True)
class Released:
    """What a retry or a skip did to one stream's parked events."""

    applied: int
    skipped: int
    still_parked: int
    reason: str | None
    """Why the first one still parked was refused again (None when none is)."""


class NothingParked(LookupError):
    """The stream has no parked events in that projection."""


async def apply_or_refusals(
    connection: asyncpg.Connection[Any], projection: Projection, events: Sequence[RecordedEvent]
) -> list[tuple[RecordedEvent, str]]:
    """Apply the events of one stored event in a savepoint, or nothing of them: what refused them
    (the upcasters, the projection, the database), empty if they were applied."""
    undecodable = [(e, e.undecodable) for e in events if e.undecodable is not None]
    if undecodable:
        return undecodable
    try:
        async with connection.transaction():  # a savepoint
            return await projection.apply(connection, events)
    except REFUSED_BY_READ_MODEL as error:
        return [(events[0], refusal(error))]


def refusal(error: asyncpg.PostgresError) -> str:
    """Why the database refused a row, without the row: Postgres's DETAIL ("Failing row contains
    (...)") holds the event's values, personal data opened from its seal among them, and a reason is
    stored (parked_events) and logged."""
    return f"{type(error).__name__}: {error.args[0] if error.args else error.sqlstate}"


async def held_streams(
    connection: asyncpg.Connection[Any], projection: str, pairs: Sequence[Position]
) -> dict[tuple[UUID, str], int]:
    """The streams of the claimed pairs with parked events: the first parked SequenceNumber of each,
    by (account, stream id). One index range per pair, empty in the common case."""
    rows = await connection.fetch(
        _HELD, projection, [p.account_id for p in pairs], [p.stream_type for p in pairs]
    )
    return {(r["account_id"], r["stream_id"]): r["first"] for r in rows}


async def park(connection: asyncpg.Connection[Any], projection: str, parked: Sequence[Parked]) -> None:
    await connection.executemany(
        _PARK,
        [
            (projection, e.account_id, e.stream_type, e.sequence_number, e.stream_id, e.name, reason, behind)
            for e, reason, behind in parked
        ],
    )


async def forget(connection: asyncpg.Connection[Any], projection: str, account_id: UUID) -> None:
    """Drop the account's parked events (a rebuild replays them all, parking afresh what is refused)."""
    await connection.execute(
        "DELETE FROM parked_events WHERE projection = $1 AND account_id = $2", projection, account_id
    )


async def parked(
    executor: asyncpg.Pool[Any], projection: str | None, account_id: UUID | None, limit: int
) -> list[ParkedEvent]:
    """Parked events (of one projection, one account, or all), by stream and in stream order."""
    rows = await executor.fetch(_LIST, projection, account_id, limit)
    return [
        ParkedEvent(
            r["projection"],
            r["account_id"],
            r["stream_type"],
            r["sequence_number"],
            r["stream_id"],
            r["payload_item_name"],
            r["reason"],
            r["held_behind"],
            r["parked_at"],
        )
        for r in rows
    ]


async def counts(executor: asyncpg.Pool[Any], projection: str, account_id: UUID | None) -> tuple[int, int]:
    """(refused, held behind them) in one projection, for one account or all."""
    row = await executor.fetchrow(_COUNT, projection, account_id)
    assert row is not None
    return row["refused"], row["held"]


async def release(
    pool: asyncpg.Pool[Any],
    projection: Projection,
    feed: EventFeed,
    account_id: UUID,
    stream_id: str,
    *,
    skip: bool = False,
) -> Released:
    """Retry one stream's parked events in order (`skip`: all but the refused one), in one
    transaction; NothingParked if it has none."""
    async with pool.acquire() as connection, connection.transaction():
        nothing = NothingParked(
            f"{stream_id} of account {account_id} has no events parked in {projection.name}"
        )
        rows = await connection.fetch(_OF_STREAM, projection.name, account_id, stream_id)
        if not rows:
            raise nothing
        stream_type = rows[0]["stream_type"]
        # As a batch does: no version switches in meanwhile.
        await Checkpoints(projection.name, projection.stream_types).hold_writers(connection)
        await connection.fetchval(_LOCK_CHECKPOINT, projection.name, account_id, stream_type)
        # Read again under the lock: a batch that held it may have parked more behind, and a
        # release of the same stream that held it may have released them all.
        rows = await connection.fetch(_OF_STREAM, projection.name, account_id, stream_id)
        if not rows:
            raise nothing
        numbers = [r["sequence_number"] for r in rows]
        stored = await connection.fetch(_EVENTS, account_id, stream_type, numbers)
        # A stored event an upcaster split is one unit; one the upcasters still fail on is refused.
        keys = await feed.keys_for(connection, stored)
        parts = [feed.decode(row, keys, lenient=True) for row in stored]
        done = [p[0].sequence_number for p in parts[:1]] if skip else []
        reason: str | None = None
        for events in parts[len(done) :]:
            refusals = await apply_or_refusals(connection, projection, events)
            if refusals:
                reason = refusals[0][1]
                number = events[0].sequence_number
                await connection.execute(_REPARK, projection.name, account_id, stream_type, number, reason)
                break
            done.append(events[0].sequence_number)
        await connection.execute(_UNPARK, projection.name, account_id, stream_type, done)
    skipped = int(skip)
    return Released(len(done) - skipped, skipped, len(parts) - len(done), reason)
