"""Rebuilding one account's read model from its first event, all at once for its readers.

The account's replay is one transaction: readers see the old rows until it commits and the new
ones after, never a read model half built, and a rebuild that fails or is cancelled changes
nothing. Its checkpoints stay locked meanwhile, so the live projector passes the account by
(SKIP LOCKED) and goes on from the rebuilt positions after the commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
from opentelemetry import trace

from core.db import finish_before_cancelling
from core.telemetry import traced
from queries.fan_out_jobs import forget as forget_fan_outs
from queries.notifications import ProjectionAdvanced
from queries.projector import parking
from queries.projector.batch import REDO_ONE_BY_ONE, Projector

tracer = trace.get_tracer("erp.projector")


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """What one account's rebuild replayed."""

    batches: int
    events: int


async def rebuild_account(
    projector: Projector, account_id: UUID, progress: Callable[[int], None] | None = None
) -> Rebuilt:
    """Replace one account's read model with a replay of its events, in one transaction.

    `progress` hears the number of events applied after each batch. A cancellation takes effect
    between batches.
    """
    name = projector.projection.name
    positions: dict[str, ProjectionAdvanced] = {}
    batches = 0
    with traced(tracer, f"rebuild {name}", attributes={"erp.projection": name}):
        async with projector.pool.acquire() as connection:
            # Committed first: a checkpoint row inserted inside the long transaction would make
            # the live projector's own insert of it wait for the whole rebuild.
            await projector.checkpoints.add_missing(connection, account_id)
        async with projector.pool.acquire() as connection, connection.transaction():
            await forget_fan_outs(connection, projector.projection.name, account_id)  # before the locks
            await projector.checkpoints.restart(connection, account_id)
            await projector.projection.clear(connection, account_id)
            await parking.forget(connection, projector.projection.name, account_id)  # parked afresh
            while advanced := await finish_before_cancelling(_replay(projector, connection, account_id)):
                batches += 1
                positions.update((a.stream_type, a) for a in advanced)
                if progress is not None:
                    progress(sum(a.position for a in positions.values()))
    if positions and projector.notifier is not None:
        await projector.notifier.publish(list(positions.values()), [])
    # SequenceNumbers have no gaps per (account, stream type): the positions count the events.
    return Rebuilt(batches, sum(a.position for a in positions.values()))


async def _replay(
    projector: Projector, connection: asyncpg.Connection[Any], account_id: UUID
) -> list[ProjectionAdvanced]:
    """One batch of a rebuild, in a savepoint: a batch the read model refuses is redone event
    by event, parking what it refuses, as a live batch does."""
    try:
        async with connection.transaction():
            return await projector.apply(connection, account_id, [], [], live=False)
    except REDO_ONE_BY_ONE:
        async with connection.transaction():
            return await projector.apply(connection, account_id, [], [], True, live=False)
