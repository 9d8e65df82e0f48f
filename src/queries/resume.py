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
from queries.registry import WAITABLE

PAIRS = frozenset((name, t) for name, read_model in WAITABLE.items() for t in read_model.scope.owners)
"""Every (read model, stream type) a stream may tell: what an id carries, so it stays this small."""


async def current_positions(pool: asyncpg.Pool[Any], account_id: UUID) -> Told:
    """(read model, stream type) → how far the read model shows the type for the account."""
    positions: Told = {}
    for name, read_model in WAITABLE.items():
        scope = read_model.scope
        reached = await fan_out_jobs.positions(pool, scope.owners, scope.fan_outs, account_id, scope.owners)
        for stream_type, position in reached.items():
            positions[(name, stream_type)] = position
    return positions


def missed(told: Told, current: Told) -> Told:
    """The pairs whose current position is past what the client was told (unknown pairs: past 0)."""
    return {pair: n for pair, n in sorted(current.items()) if n > told.get(pair, 0)}
