"""The event store: append to one or more streams of an account atomically, and load a stream.

Guarantees (DESIGN.md, invariants 1-3 and 6):

* StreamRevision runs 1, 2, 3, ... per stream. `append` checks every stream's
  expected revision against the `streams` row it locks, so a stale expectation
  raises `ConcurrencyConflict` and nothing is written.
* SequenceNumber runs 1, 2, 3, ... per (AccountId, StreamType). Numbers come
  from a counter row that stays locked until the appending transaction ends,
  so transactions of one (account, stream type) commit in sequence order and a
  reader that has seen N never later finds an event <= N.
* Everything in one `append` call commits or rolls back together. Group commit
  may carry it in one transaction with other accounts' appends; each append is
  still all or nothing, and a refused one does not affect the others.
* Events are never updated or deleted (a trigger refuses it).

The work happens in SQL functions, one round trip per call, each append scoped
to its account by row-level security. The append, `erp_append_batch`, lives
beside this module in `append.sql` (the others in `streams.sql`); its
arguments are named once, by `AppendBatchArguments`. Each event is stored at
its name's schema version today (`Upcasters.version`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from operator import attrgetter
from typing import Annotated, Any, get_type_hints
from uuid import UUID

import asyncpg
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanContext

from commands.store.feed import EventFeed, Executor, RecordedEvent
from commands.store.group_commit import GroupCommit, Outcome
from commands.store.sealing import ERASE, Sealing, SubjectErased
from commands.store.upcasting import Upcasters
from core.metrics import APPEND_BATCH_SIZE, EVENTS_APPENDED
from core.telemetry import traced
from tenancy.fences import AccountElsewhere

tracer = trace.get_tracer("erp.event_store")


class ConcurrencyConflict(Exception):
    """A stream's revision was not the one the writer expected."""

    def __init__(self, stream_id: str, expected: int, actual: int | None) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        found = "changed concurrently" if actual is None else f"is at revision {actual}"
        super().__init__(f"stream {stream_id} was expected at revision {expected} but {found}")


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event decided by an aggregate, not yet stored."""

    name: str
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StreamWrite:
    """New events for one stream, valid only if the stream is still at `expected_revision`."""

    stream_id: str
    stream_type: str
    expected_revision: int
    events: Sequence[PendingEvent]
    key: bytes | None = None
    """A key made for the stream's data subject (a new stream whose events carry personal data):
    the append stores it with the events (`commands.store.sealing`)."""


@dataclass(frozen=True, slots=True)
class CommandMetadata:
    """Who caused an append: stored with every event it writes."""

    command_id: UUID
    correlation_id: UUID
    causation_id: UUID
    trace_context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Each written stream's new revision and each stream type's last SequenceNumber."""

    revisions: dict[str, int]
    positions: dict[str, int]


class CommandAlreadyLogged(Exception):
    """An append carrying the same command id committed first: a concurrent retry of an idempotent command."""


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """One atomic append: an account's non-empty stream writes, sorted by stream id."""

    account_id: UUID
    writes: Sequence[StreamWrite]
    metadata: CommandMetadata
    log: CommandLogEntry | None = None
    caller: SpanContext | None = None
    """The span that asked for it, linked from the batch that carries it."""


MAX_BATCH = 50
"""Appends per batch; the SQL function allows 60 (subtransactions a backend caches: 64)."""


@dataclass(frozen=True, slots=True)
class CommandLogEntry:
    """Makes an append idempotent: stored with it, keyed by the command id."""

    command_name: str
    request_hash: bytes
    result: Mapping[str, Any]
    """Recorded with the append; the store adds the `Positions` it assigned."""


class EventStore:
    """Appends and loads one account's events; row-level security scopes every call.

    Appends on a pool use group commit (`commands.store.group_commit`): appends that
    arrive while another is in flight are sent together as one statement and
    commit in one transaction, each still all-or-nothing on its own.
    """

    def __init__(
        self,
        upcasters: Upcasters | None = None,
        *,
        sealing: Sealing | None = None,
        group_commit: bool = True,
        lanes: int = 2,
    ) -> None:
        self.feed = EventFeed(upcasters, sealing)
        """How this store's events are read back: the decoder every reader shares."""
        self._group_commit = group_commit
        self._lanes = lanes
        self._groups: dict[asyncpg.Pool[Any], GroupCommit[AppendRequest, AppendResult]] = {}

    async def load(
        self, executor: Executor, account_id: UUID, stream_id: str, after_revision: int = 0
    ) -> list[RecordedEvent]:
        """The stream's events after `after_revision`, oldest first, upcast to today's schema."""
        return await self.feed.stream(executor, account_id, stream_id, after_revision)

    async def append(
        self,
        executor: Executor,
        account_id: UUID,
        writes: Sequence[StreamWrite],
        metadata: CommandMetadata,
        log: CommandLogEntry | None = None,
    ) -> AppendResult:
        """Append all `writes` atomically; raise `ConcurrencyConflict` if any stream moved.

        Raises `CommandAlreadyLogged` if `log` is given and its command id is
        already in the command log, and `tenancy.fences.AccountElsewhere` if a move has
        fenced the account in this database (nothing is written; its route is about to
        change). On a pool the append is its own transaction, shared with concurrent
        appends (group commit); on a connection inside a transaction it joins that one.
        """
        writes = sorted((w for w in writes if w.events), key=lambda w: w.stream_id)
        if not writes:
            return AppendResult(revisions={}, positions={})
        writes, erasing, made = await self._sealed(self.feed.sealing, executor, account_id, writes)
        with traced(
            tracer,
            "append",
            attributes={
                "erp.account_id": str(account_id),
                "erp.streams": [w.stream_id for w in writes],
                "erp.events": sum(len(w.events) for w in writes),
            },
        ) as span:
            request = AppendRequest(account_id, writes, metadata, log, span.get_span_context())
            if erasing:
                result = await self._erase(executor, request, erasing)
            elif self._group_commit and isinstance(executor, asyncpg.Pool):
                result = await self._group(executor).submit(request)
            else:
                [outcome] = await self.append_batch(executor, [request])
                if isinstance(outcome, Exception):
                    raise outcome
                result = outcome
            for subject, key in made.items():  # committed with the events sealed with them
                self.feed.sealing.keys.remember((account_id, subject), key)
            for stream_type, position in result.positions.items():
                span.set_attribute(f"erp.position.{stream_type}", position)
            for write in writes:
                EVENTS_APPENDED.add(len(write.events), {"stream_type": write.stream_type})
        return result

    @staticmethod
    async def _sealed(
        sealing: Sealing, executor: Executor, account_id: UUID, writes: list[StreamWrite]
    ) -> tuple[list[StreamWrite], list[str], dict[str, bytes]]:
        """The writes with their events' personal fields sealed, the subjects they erase, and the
        keys made for them (to remember once the append has committed).

        A subject erased meanwhile is a ConcurrencyConflict: the command was decided on its state
        from before the erasure.
        """
        erasing = [
            w.stream_id
            for w in writes
            if any(sealing.personal.erases(w.stream_type, e.name) for e in w.events)
        ]
        personal = {
            w.stream_id: w.expected_revision == 0
            for w in writes
            for e in w.events
            if any(f in e.payload for f in sealing.personal_fields(w.stream_type, e.name))
        }
        if not personal:
            return writes, erasing, {}
        try:
            ciphers, made, new = await sealing.keys_for_append(executor, account_id, personal)
        except SubjectErased as erased:  # decided on state from before the erasure: decide again
            [write] = [w for w in writes if w.stream_id == erased.subject]
            raise ConcurrencyConflict(write.stream_id, write.expected_revision, None) from None
        sealed = []
        for write in writes:
            cipher = ciphers.get(write.stream_id)
            if cipher is None:
                sealed.append(write)
                continue
            events = [
                PendingEvent(
                    e.name,
                    sealing.seal(
                        cipher,
                        account_id,
                        write.stream_id,
                        e.payload,
                        sealing.personal_fields(write.stream_type, e.name),
                    ),
                )
                for e in write.events
            ]
            key = new.get(write.stream_id)  # made here: the append stores it with the events
            sealed.append(
                StreamWrite(write.stream_id, write.stream_type, write.expected_revision, events, key)
            )
        return sealed, erasing, made

    async def _erase(self, executor: Executor, request: AppendRequest, subjects: list[str]) -> AppendResult:
        """An append that erases subjects: their keys are deleted in its own transaction, so the
        erasure is on record exactly when its keys are gone."""
        if isinstance(executor, asyncpg.Pool):
            async with executor.acquire() as connection, connection.transaction():
                result = await self._erase_in(connection, request, subjects)
        else:
            result = await self._erase_in(executor, request, subjects)
        await self.feed.sealing.erased(request.account_id)
        return result

    async def _erase_in(
        self, executor: Executor, request: AppendRequest, subjects: list[str]
    ) -> AppendResult:
        for subject in subjects:
            await executor.fetch(ERASE, request.account_id, subject)
        [outcome] = await self.append_batch(executor, [request])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def append_batch(
        self, executor: Executor, requests: Sequence[AppendRequest]
    ) -> list[Outcome[AppendResult]]:
        """Append for distinct accounts in one statement; each request's outcome in request order.

        A request refused for a stale revision or a logged command id gets its
        exception as its outcome and writes nothing; the others are unaffected.
        Any other error fails the whole statement, and nothing of it is written.
        """
        order = sorted(range(len(requests)), key=lambda i: requests[i].account_id)
        ordered = [requests[i] for i in order]
        rows = await executor.fetch(APPEND_BATCH, *batch_arguments(ordered, self.feed.upcasters))
        outcomes = dict(zip(order, map(_outcome, ordered, rows), strict=True))
        return [outcomes[i] for i in range(len(requests))]

    def _group(self, pool: asyncpg.Pool[Any]) -> GroupCommit[AppendRequest, AppendResult]:
        group = self._groups.get(pool)
        if group is None:
            for closed in [p for p in self._groups if p.is_closing()]:
                del self._groups[closed]
            group = GroupCommit(
                partial(self._send_group, pool),
                key=lambda request: request.account_id,
                lanes=self._lanes,
                max_batch=MAX_BATCH,
            )
            group.batch_sizes = partial(APPEND_BATCH_SIZE.record)
            self._groups[pool] = group
        return group

    async def _send_group(
        self, pool: asyncpg.Pool[Any], requests: list[AppendRequest]
    ) -> list[Outcome[AppendResult]]:
        links = [trace.Link(r.caller) for r in requests if r.caller is not None and r.caller.is_valid]
        with traced(
            tracer, "append batch", context=Context(), links=links, attributes={"erp.appends": len(requests)}
        ):
            try:
                return await self.append_batch(pool, requests)
            except asyncpg.PostgresError:
                if len(requests) == 1:
                    raise
            # The server refused the whole statement (so none of it was written), perhaps for one
            # request's sake: send each alone, and each caller gets its own answer.
            return list(await asyncio.gather(*(self._alone(pool, request) for request in requests)))

    async def _alone(self, pool: asyncpg.Pool[Any], request: AppendRequest) -> Outcome[AppendResult]:
        try:
            [outcome] = await self.append_batch(pool, [request])
        except Exception as error:
            return error
        return outcome


@dataclass(slots=True)
class AppendBatchArguments:
    """`erp_append_batch`'s arguments (append.sql), each named once: field `x` is parameter `p_x`,
    of the SQL type its annotation carries.

    `APPEND_BATCH` passes them in named notation, so no two can swap places and a name the
    function does not have fails the first call. Per append i: entry i of each column up to
    `results`; its streams and events are the flat stream and event columns up to
    `stream_ends[i]` and `event_ends[i]` (streams sorted by id, events in stream order).
    """

    accounts: Annotated[list[UUID], "uuid[]"]
    command_ids: Annotated[list[UUID], "uuid[]"]
    correlation_ids: Annotated[list[UUID], "uuid[]"]
    causation_ids: Annotated[list[UUID], "uuid[]"]
    trace_contexts: Annotated[list[dict[str, str]], "jsonb[]"]
    command_names: Annotated[list[str | None], "text[]"]
    request_hashes: Annotated[list[bytes | None], "bytea[]"]
    results: Annotated[list[dict[str, Any] | None], "jsonb[]"]
    stream_ends: Annotated[list[int], "integer[]"]
    stream_ids: Annotated[list[str], "text[]"]
    stream_types: Annotated[list[str], "text[]"]
    expected: Annotated[list[int], "integer[]"]
    counts: Annotated[list[int], "integer[]"]
    event_ends: Annotated[list[int], "integer[]"]
    event_stream_ids: Annotated[list[str], "text[]"]
    event_revisions: Annotated[list[int], "integer[]"]
    event_types: Annotated[list[str], "text[]"]
    names: Annotated[list[str], "text[]"]
    payloads: Annotated[list[Mapping[str, Any]], "jsonb[]"]
    versions: Annotated[list[int], "smallint[]"]
    stream_keys: Annotated[list[bytes | None], "bytea[]"]
    """Per stream: a key the append stores for its subject (a new stream's), or None."""

    def __iter__(self) -> Iterator[list[Any]]:
        """The values in `APPEND_BATCH`'s order: `fetch(APPEND_BATCH, *arguments)`."""
        return iter(_values(self))


_HINTS = get_type_hints(AppendBatchArguments, include_extras=True)
APPEND_PARAMETERS: dict[str, str] = {
    f"p_{f.name}": _HINTS[f.name].__metadata__[0] for f in fields(AppendBatchArguments)
}
"""The function's parameters, as `AppendBatchArguments` names them: {name: SQL type}, in order."""
_values = attrgetter(*(f.name for f in fields(AppendBatchArguments)))
APPEND_BATCH = (
    "SELECT stream_types, last_sequences, refusal, detail FROM erp_append_batch("
    + ", ".join(
        f"{name} => ${n}::{sql_type}" for n, (name, sql_type) in enumerate(APPEND_PARAMETERS.items(), 1)
    )
    + ")"
)
"""The append's one statement, built once: `erp_append_batch(p_accounts => $1::uuid[], ...)`."""


def batch_arguments(
    requests: Sequence[AppendRequest], upcasters: Upcasters | None = None
) -> AppendBatchArguments:
    """`erp_append_batch`'s arguments for requests of distinct accounts, in ascending account order.

    Each event is stored at the schema version `upcasters` give its name (1 without upcasters).
    """
    arguments = AppendBatchArguments(*[[] for _ in APPEND_PARAMETERS])
    version = (upcasters or _NO_UPCASTERS).version
    # Bound by name once, so the loop below appends to locals (this is the append's hot path).
    accounts, command_ids = arguments.accounts, arguments.command_ids
    correlation_ids, causation_ids = arguments.correlation_ids, arguments.causation_ids
    trace_contexts, command_names = arguments.trace_contexts, arguments.command_names
    request_hashes, results = arguments.request_hashes, arguments.results
    stream_ends, stream_ids, stream_types = (
        arguments.stream_ends,
        arguments.stream_ids,
        arguments.stream_types,
    )
    expected, counts, stream_keys = arguments.expected, arguments.counts, arguments.stream_keys
    event_ends, event_stream_ids = arguments.event_ends, arguments.event_stream_ids
    event_revisions, event_types = arguments.event_revisions, arguments.event_types
    names, payloads, versions = arguments.names, arguments.payloads, arguments.versions
    for request in requests:
        metadata, log = request.metadata, request.log
        accounts.append(request.account_id)
        command_ids.append(metadata.command_id)
        correlation_ids.append(metadata.correlation_id)
        causation_ids.append(metadata.causation_id)
        trace_contexts.append(dict(metadata.trace_context))
        command_names.append(log.command_name if log else None)
        request_hashes.append(log.request_hash if log else None)
        results.append(dict(log.result) if log else None)
        for write in request.writes:
            stream_ids.append(write.stream_id)
            stream_types.append(write.stream_type)
            expected.append(write.expected_revision)
            counts.append(len(write.events))
            stream_keys.append(write.key)
            for revision, pending in enumerate(write.events, start=write.expected_revision + 1):
                event_stream_ids.append(write.stream_id)
                event_revisions.append(revision)
                event_types.append(write.stream_type)
                names.append(pending.name)
                payloads.append(pending.payload)
                versions.append(version(pending.name))
        stream_ends.append(len(stream_ids))
        event_ends.append(len(event_stream_ids))
    return arguments


_NO_UPCASTERS = Upcasters()


def _outcome(request: AppendRequest, row: asyncpg.Record) -> Outcome[AppendResult]:
    if row["refusal"] == "fenced":
        return AccountElsewhere.from_detail(request.account_id, row["detail"])
    if row["refusal"] == "conflict":
        detail = json.loads(row["detail"] or "{}")
        return ConcurrencyConflict(
            detail.get("StreamId", "?"), detail.get("Expected", -1), detail.get("Actual")
        )
    if row["refusal"] == "duplicate":
        return CommandAlreadyLogged(f"command {request.metadata.command_id} is already logged")
    return AppendResult(
        revisions={w.stream_id: w.expected_revision + len(w.events) for w in request.writes},
        positions=dict(zip(row["stream_types"], row["last_sequences"], strict=True)),
    )
