"""A projection's checkpoints: how far it has applied each (account, stream type), and all their SQL.

A checkpoint moves only in the transaction that applies the events before it, so it is the
projection's exact position. Claiming locks it (`FOR UPDATE ... SKIP LOCKED`): two projectors (a
zombie after a killed worker, a rebuild) then work on different accounts instead of waiting.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from commands.store.feed import Position

_ADD_MISSING = """
INSERT INTO projection_checkpoints (projection, account_id, stream_type, position)
SELECT $1, s.account_id, s.stream_type, 0
FROM stream_sequences s
WHERE s.stream_type = ANY($2::text[]) AND ($3::uuid IS NULL OR s.account_id = $3)
  AND NOT EXISTS (
      SELECT 1 FROM projection_checkpoints c
      WHERE c.projection = $1 AND c.account_id = s.account_id AND c.stream_type = s.stream_type)
ON CONFLICT DO NOTHING
"""
_CLAIM_LAGGING = """
SELECT c.account_id, c.stream_type, c.position
FROM projection_checkpoints c
JOIN stream_sequences s ON s.account_id = c.account_id AND s.stream_type = c.stream_type
WHERE c.projection = $1 AND c.stream_type = ANY($2::text[]) AND s.last_sequence > c.position
  AND ($3::uuid IS NULL OR c.account_id = $3)
ORDER BY s.last_sequence - c.position DESC
LIMIT $4
FOR UPDATE OF c SKIP LOCKED
"""
_SAVE = "SELECT erp_save_checkpoints($1, $2, $3, $4)"
# Every writer of a projection's read model holds its writer lock, shared, until it commits (the
# live projector's claim takes it in erp_claim_checkpoints); a version switching in holds it alone.
_HOLD = "SELECT pg_advisory_xact_lock_shared(hashtext('erp.projection:' || $1))"
_HOLD_ALONE = "SELECT pg_advisory_xact_lock(hashtext('erp.projection:' || $1))"
# Locks the account's checkpoints (waiting out a live batch that holds them) and starts them over;
# the live projector claims with SKIP LOCKED and never waits for them, so no deadlock.
_RESTART = """
UPDATE projection_checkpoints SET position = 0, updated_at = now()
WHERE projection = $1 AND account_id = $2
"""
_CHANGED = "SELECT horizon, account_ids, stream_types FROM erp_changed_pairs($1, $2, $3)"
# The candidates' checkpoints still lagging, most lagging first (checkpoints.sql: an index lookup each).
_CLAIM_AMONG = "SELECT * FROM erp_claim_checkpoints($1, $2, $3, $4)"
# Scalar subqueries: each pair's counter and checkpoint by its key, whatever the plan guesses (a
# join let a generic plan hash both tables whole, a cost that grew with the accounts).
_BEHIND_AMONG = """
SELECT account_id, stream_type, behind FROM (
    SELECT w.account_id, w.stream_type,
           (SELECT s.last_sequence FROM stream_sequences s
            WHERE s.account_id = w.account_id AND s.stream_type = w.stream_type)
           - coalesce((SELECT c.position FROM projection_checkpoints c
                       WHERE c.projection = $1 AND c.account_id = w.account_id
                         AND c.stream_type = w.stream_type), 0) AS behind
    FROM unnest($2::uuid[], $3::text[]) AS w(account_id, stream_type)
) pairs
WHERE behind > 0
"""

_ACCOUNTS = """
SELECT DISTINCT account_id FROM stream_sequences WHERE stream_type = ANY($1::text[]) ORDER BY account_id
"""
_STATUS = """
SELECT s.account_id, s.stream_type, s.last_sequence, coalesce(c.position, 0) AS position,
       c.updated_at
FROM stream_sequences s
LEFT JOIN projection_checkpoints c
  ON c.projection = $1 AND c.account_id = s.account_id AND c.stream_type = s.stream_type
WHERE s.stream_type = ANY($2::text[]) AND ($3::uuid IS NULL OR s.account_id = $3)
"""


@dataclass(frozen=True, slots=True)
class Lag:
    """How far a projection is behind the store, summed over accounts."""

    projection: str
    head: int
    position: int

    @property
    def events_behind(self) -> int:
        return self.head - self.position


Pair = tuple[UUID, str]
"""(AccountId, StreamType): what one checkpoint covers."""


class Checkpoints:
    """One projection's checkpoints over some stream types; each call runs on the caller's connection."""

    def __init__(self, projection: str, stream_types: tuple[str, ...]) -> None:
        self.projection = projection
        self.stream_types = list(stream_types)

    async def add_missing(self, connection: asyncpg.Connection[Any], account_id: UUID | None) -> bool:
        """Start a checkpoint at 0 for every stream type with events but none yet; True if any was."""
        status = await connection.execute(_ADD_MISSING, self.projection, self.stream_types, account_id)
        return not status.endswith(" 0")

    async def hold_writers(self, connection: asyncpg.Connection[Any], *, alone: bool = False) -> None:
        """Take the projection's writer lock until the transaction ends: shared, as every writer of its
        read model does; `alone`, to stop them all (a switch of versions)."""
        await connection.execute(_HOLD_ALONE if alone else _HOLD, self.projection)

    async def claim_lagging(
        self, connection: asyncpg.Connection[Any], account_id: UUID | None, limit: int
    ) -> list[Position]:
        """Lock up to `limit` of the most lagging checkpoints no one else holds (in a transaction),
        holding the writer lock first."""
        await self.hold_writers(connection)
        rows = await connection.fetch(_CLAIM_LAGGING, self.projection, self.stream_types, account_id, limit)
        return [Position(r["account_id"], r["stream_type"], r["position"]) for r in rows]

    async def save(self, connection: asyncpg.Connection[Any], last: Mapping[tuple[UUID, str], int]) -> None:
        """Move claimed checkpoints to the last SequenceNumber applied per (account, stream type)."""
        await connection.execute(
            _SAVE, self.projection, [a for a, _ in last], [t for _, t in last], list(last.values())
        )

    async def restart(self, connection: asyncpg.Connection[Any], account_id: UUID) -> None:
        """Lock one account's checkpoints and set them back to 0 (a rebuild, in its transaction)."""
        await self.hold_writers(connection)
        await connection.execute(_RESTART, self.projection, account_id)

    async def changed_since(
        self, connection: asyncpg.Connection[Any], horizon: int
    ) -> tuple[int, list[Pair]]:
        """The pairs lagging this projection among the counters changed by transactions a look at
        `horizon` could not see (0: every counter), and the horizon for the next look. Costs what
        changed, not what exists; adds the checkpoints those pairs lack."""
        row = await connection.fetchrow(_CHANGED, self.projection, self.stream_types, horizon)
        assert row is not None
        return int(row["horizon"]), list(zip(row["account_ids"], row["stream_types"], strict=True))

    async def claim_among(
        self, connection: asyncpg.Connection[Any], pairs: Collection[Pair], limit: int
    ) -> list[tuple[Position, int]]:
        """Lock up to `limit` of the most lagging of `pairs` that no one else holds (in a
        transaction); each with the head it was claimed at."""
        rows = await connection.fetch(
            _CLAIM_AMONG, self.projection, [a for a, _ in pairs], [t for _, t in pairs], limit
        )
        return [
            (Position(r["account_id"], r["stream_type"], r["position"]), r["last_sequence"]) for r in rows
        ]

    async def behind_among(
        self, connection: asyncpg.Connection[Any] | asyncpg.Pool[Any], pairs: Collection[Pair]
    ) -> dict[Pair, int]:
        """How many events each of `pairs` still lags (the caught-up ones left out)."""
        rows = await connection.fetch(
            _BEHIND_AMONG, self.projection, [a for a, _ in pairs], [t for _, t in pairs]
        )
        return {(r["account_id"], r["stream_type"]): r["behind"] for r in rows}

    async def accounts(self, connection: asyncpg.Connection[Any] | asyncpg.Pool[Any]) -> list[UUID]:
        """Every account with events of these stream types, in a fixed order."""
        rows = await connection.fetch(_ACCOUNTS, self.stream_types)
        return [r["account_id"] for r in rows]

    async def lag(
        self, connection: asyncpg.Connection[Any] | asyncpg.Pool[Any], account_id: UUID | None = None
    ) -> Lag:
        """The projection's head (events to apply) and position (events applied)."""
        rows = await connection.fetch(_STATUS, self.projection, self.stream_types, account_id)
        return Lag(
            self.projection,
            head=sum(r["last_sequence"] for r in rows),
            position=sum(r["position"] for r in rows),
        )
