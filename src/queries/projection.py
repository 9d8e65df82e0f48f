"""What a projection is: a named read model fed by some stream types."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol
from uuid import UUID

import asyncpg

from commands.store.feed import RecordedEvent


class Projection(Protocol):
    """Builds read-model rows from events. The projector calls `apply` inside the transaction
    that also moves the projection's checkpoints, so each event is applied exactly once."""

    name: str
    stream_types: tuple[str, ...]

    async def apply(
        self, connection: asyncpg.Connection[Any], events: Sequence[RecordedEvent]
    ) -> list[tuple[RecordedEvent, str]]:
        """Apply `events` (ordered by SequenceNumber within each account and stream type).

        Returns the events it cannot apply, each with the reason; the projector
        parks them (in the same transaction) and moves on.
        """

    async def clear(self, connection: asyncpg.Connection[Any], account_id: UUID | None) -> None:
        """Delete the read model's rows for one account, or for all when `account_id` is None."""
