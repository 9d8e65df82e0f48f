"""A unit of work: the aggregates one command touched, saved in one atomic append."""

from __future__ import annotations

from typing import TypeVar
from uuid import UUID

from commands.aggregate import Aggregate
from commands.event_store import (
    AppendResult,
    CommandLogEntry,
    CommandMetadata,
    EventStore,
    Executor,
    StreamWrite,
)

A = TypeVar("A", bound=Aggregate)


class UnitOfWork:
    """Loads aggregates for one account and appends all their new events in one atomic call.

    Loading and appending are separate statements: optimistic concurrency (each
    stream's expected revision) makes the append fail if anything moved between.
    """

    def __init__(self, executor: Executor, account_id: UUID, store: EventStore) -> None:
        self.executor = executor
        self.account_id = account_id
        self._store = store
        self._seen: dict[str, Aggregate] = {}
        self.primary: Aggregate | None = None
        """The first aggregate loaded: the stream a command's ExpectedRevision refers to."""

    async def get(self, aggregate_type: type[A], stream_id: str) -> A:
        """The aggregate at its latest revision (a new one at revision 0 if the stream is empty)."""
        seen = self._seen.get(stream_id)
        if seen is not None:
            if not isinstance(seen, aggregate_type):
                raise TypeError(f"{stream_id} is a {type(seen).__name__}")
            return seen
        aggregate = aggregate_type(stream_id)
        if self.primary is None:
            self.primary = aggregate
        aggregate.replay(await self._store.load(self.executor, self.account_id, stream_id))
        self._seen[stream_id] = aggregate
        return aggregate

    async def commit(self, metadata: CommandMetadata, log: CommandLogEntry | None = None) -> AppendResult:
        """Append every touched aggregate's pending events, each checked against its loaded revision."""
        writes = [
            StreamWrite(
                stream_id=aggregate.stream_id,
                stream_type=aggregate.stream_type,
                expected_revision=aggregate.revision,
                events=aggregate.pending_events(),
            )
            for aggregate in self._seen.values()
        ]
        return await self._store.append(self.executor, self.account_id, writes, metadata, log)
