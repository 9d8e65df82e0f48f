"""A unit of work: the aggregates one command touched, saved in one atomic append."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar
from uuid import UUID

from commands.model import SNAPSHOT, Aggregate
from commands.store.event_store import AppendResult, CommandLogEntry, CommandMetadata, StreamWrite
from commands.store.feed import Executor, RecordedEvent
from commands.store.snapshots import Snapshot, Snapshots
from commands.stream_cache import CachedEvent, History, StreamCache, event_bytes

A = TypeVar("A", bound=Aggregate)


class Store(Protocol):
    """What commands need of an event store: `commands.store.event_store.EventStore`, or the
    in-memory one the unit tests use (both held to `tests/contracts/test_event_store.py`)."""

    async def load(
        self, executor: Executor, account_id: UUID, stream_id: str, after_revision: int = 0
    ) -> list[RecordedEvent]: ...

    async def append(
        self,
        executor: Executor,
        account_id: UUID,
        writes: Sequence[StreamWrite],
        metadata: CommandMetadata,
        log: CommandLogEntry | None = None,
    ) -> AppendResult: ...


CustomCheck = Callable[[str, dict[str, Any] | None, bool], Awaitable[None]]
"""(element, custom values, whether the command creates the element) -> raises InvalidCommand."""


class UnitOfWork:
    """Loads aggregates for one account and appends all their new events in one atomic call.

    Loading and appending are separate statements: optimistic concurrency (each
    stream's expected revision) makes the append fail if anything moved between.

    With `trust_cache`, aggregates come from the stream cache without asking the
    store (a stream not in the cache is taken to be new); the caller must
    re-run the command on loaded state if that attempt fails in any way.
    """

    def __init__(
        self,
        executor: Executor,
        account_id: UUID,
        store: Store,
        cache: StreamCache | None = None,
        *,
        trust_cache: bool = False,
        snapshots: Snapshots | None = None,
    ) -> None:
        self.executor = executor
        self.account_id = account_id
        self._store = store
        self._cache = cache
        self._snapshots = snapshots
        self.trust_cache = trust_cache and cache is not None
        self._seen: dict[str, Aggregate] = {}
        self._histories: dict[str, History] = {}
        self.check_custom: CustomCheck | None = None
        """Validates a command's `Custom` values for the element it turned out to address."""
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
        history = await self._history(aggregate_type, stream_id)
        aggregate.replay(history)
        if self._snapshots is not None and self._behind_snapshot(aggregate, history):
            # A long stream without a recent snapshot (it grew before it had them, or its shape
            # changed): one now, so that the next cold load reads it instead, and the cache keeps
            # the stream from it on.
            snapshot = Snapshot(aggregate.revision, aggregate.snapshot())
            await self._save(aggregate, snapshot)
            history = (self._event(snapshot.revision, SNAPSHOT, snapshot.state),)
            if self._cache is not None:
                self._cache.put(self.account_id, stream_id, history)
        self._seen[stream_id] = aggregate
        self._histories[stream_id] = history
        return aggregate

    async def _history(self, aggregate_type: type[Aggregate], stream_id: str) -> History:
        """The stream's cached events and those after them; not cached, its latest snapshot (if
        its element has them) and the events after it."""
        cached = self._cache.get(self.account_id, stream_id) if self._cache else None
        if self.trust_cache:
            return cached or ()
        base: History = cached or ()
        if not base and self._snapshots is not None and aggregate_type.snapshot_every:
            snapshot = await self._snapshots.load(
                self.executor, self.account_id, stream_id, aggregate_type.snapshot_shape
            )
            if snapshot is not None:
                base = (self._event(snapshot.revision, SNAPSHOT, snapshot.state),)
        after = base[-1].stream_revision if base else 0
        loaded = await self._store.load(self.executor, self.account_id, stream_id, after)
        history = base + tuple(self._event(e.stream_revision, e.name, e.payload) for e in loaded)
        if self._cache is not None and history:
            self._cache.put(self.account_id, stream_id, history)
        return history

    def _event(self, revision: int, name: str, payload: Mapping[str, Any]) -> CachedEvent:
        """A history's event; weighed (`event_bytes`) only when there is a cache to put it in."""
        return CachedEvent(revision, name, payload, event_bytes(payload) if self._cache is not None else 0)

    @property
    def read_without_writing(self) -> bool:
        """Whether some aggregate was only read: its revision is not checked by the append."""
        return any(not aggregate.pending_events() for aggregate in self._seen.values())

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
        result = await self._store.append(self.executor, self.account_id, writes, metadata, log)
        for write in writes:
            if not write.events:
                continue
            aggregate = self._seen[write.stream_id]
            revision = write.expected_revision + len(write.events)
            snapshot = await self._snapshot(aggregate, write.expected_revision, revision)
            if self._cache is None:
                continue
            if snapshot is not None:  # the cached history starts again from it
                history: History = (self._event(revision, SNAPSHOT, snapshot.state),)
            else:
                history = self._histories[write.stream_id] + tuple(
                    self._event(write.expected_revision + offset, pending.name, pending.payload)
                    for offset, pending in enumerate(write.events, start=1)
                )
            self._cache.put(self.account_id, write.stream_id, history)
        return result

    async def _snapshot(self, aggregate: Aggregate, before: int, after: int) -> Snapshot | None:
        """A snapshot of the aggregate, saved, if the append carried its stream past a multiple of
        its element's `snapshot_every`."""
        every = aggregate.snapshot_every
        if self._snapshots is None or not every or before // every == after // every:
            return None
        snapshot = Snapshot(after, aggregate.snapshot())
        await self._save(aggregate, snapshot)
        return snapshot

    @staticmethod
    def _behind_snapshot(aggregate: Aggregate, history: History) -> bool:
        """Whether loading it replayed `snapshot_every` events or more after its latest snapshot."""
        every = aggregate.snapshot_every
        if not every or len(history) <= every:
            return False
        return sum(1 for event in history if event.name != SNAPSHOT) >= every

    async def _save(self, aggregate: Aggregate, snapshot: Snapshot) -> None:
        assert self._snapshots is not None
        await self._snapshots.save(
            self.executor, self.account_id, aggregate.stream_id, aggregate.snapshot_shape, snapshot
        )
