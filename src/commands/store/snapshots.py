"""Snapshots beside the streams: the latest one of a stream, loaded before the events after it.

The model declares which elements have them and how often (`commands.model.snapshots`); the unit
of work takes one when an append carries a stream past a multiple of that, and reads the latest one
when it loads a stream it does not have cached (`commands.unit_of_work`). A snapshot is a cache: one
that cannot be saved is logged and skipped, and deleting every snapshot changes no answer. One row
per stream (the latest); its `shape` must match the element's, or it is not read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import asyncpg

log = logging.getLogger(__name__)

_LOAD = "SELECT revision, state FROM erp_load_snapshot($1, $2, $3)"
_SAVE = "SELECT erp_save_snapshot($1, $2, $3, $4, $5)"


class Executor(Protocol):
    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    revision: int
    state: dict[str, Any]


class Snapshots:
    """Loads and saves streams' snapshots in the event store's database."""

    async def load(self, executor: Executor, account_id: UUID, stream_id: str, shape: str) -> Snapshot | None:
        rows = await executor.fetch(_LOAD, account_id, stream_id, shape)
        return Snapshot(rows[0]["revision"], rows[0]["state"]) if rows else None

    async def save(
        self, executor: Executor, account_id: UUID, stream_id: str, shape: str, snapshot: Snapshot
    ) -> None:
        """Keep it, unless a later one is kept already; a failure is logged, not raised (a cache)."""
        try:
            await executor.fetch(_SAVE, account_id, stream_id, snapshot.revision, shape, snapshot.state)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as error:
            log.warning(
                "a snapshot of %s at revision %d was not saved: %s", stream_id, snapshot.revision, error
            )
