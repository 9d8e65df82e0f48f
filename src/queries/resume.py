"""Where a reconnecting notification stream starts: each read model's current position, per stream
type it shows, for one account, read as a consistency wait reads them (`queries.fan_out_jobs`:
the checkpoint of the read model projecting the type, short of the fan-outs still to run). So
what a resumed client hears is what a ConsistentWith on that read model would see at once."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from queries import fan_out_jobs
from queries.event_ids import Told
from queries.registry import SHOWS, WAITABLE


def _announced() -> frozenset[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for name, read_model in WAITABLE.items():
        owners = read_model.scope.owners
        fans_out = any(c.projection == name and not c.local for c in SHOWS.copies)
        pairs.update((name, t) for t, owner in owners.items() if fans_out or owner == name)
    return frozenset(pairs)


PAIRS = _announced()
"""Every (read model, stream type) its notifications announce: the stream types it projects, and
for one that copies another read model's data (its fan-outs announce how far they are), the
types it shows of others. All an id carries, so it stays this small."""


async def current_positions(pool: asyncpg.Pool[Any], account_id: UUID) -> Told:
    """(read model, stream type) → how far the read model shows the type for the account, for
    every pair its notifications announce (`PAIRS`)."""
    positions: Told = {}
    for name, read_model in WAITABLE.items():
        scope = read_model.scope
        reached = await fan_out_jobs.positions(pool, scope.owners, scope.fan_outs, account_id, scope.owners)
        for stream_type, position in reached.items():
            if (name, stream_type) in PAIRS:
                positions[(name, stream_type)] = position
    return positions


def missed(told: Told, current: Told) -> Told:
    """The pairs whose current position is past what the client was told (unknown pairs: past 0)."""
    return {pair: n for pair, n in sorted(current.items()) if n > told.get(pair, 0)}
