"""The one in-memory event store for tests: the Postgres store's rules, without a database.

`MemoryEventStore` has the Python interface of `commands.store.event_store.EventStore`
(`load` and `append`) and keeps its rules, and tests/contracts/test_event_store.py
holds both to the same tests (DESIGN.md, "Event store invariants"):

* per account, StreamRevision runs 1, 2, 3, ... per stream, and an append whose
  expected revision is not the stream's raises `ConcurrencyConflict`;
* per account, SequenceNumber runs 1, 2, 3, ... per stream type, streams taken in
  id order within an append;
* an append is all or nothing: every check comes before the first write;
* with a `CommandLogEntry` the command id is logged, once per account: a second
  append with it raises `CommandAlreadyLogged`;
* accounts share nothing: streams, numbers and command logs are per account;
* payloads are kept as JSON text and decoded on every load, encoded as the
  database pool encodes jsonb (msgspec: a Decimal becomes its string).

The executor is never used; pass `NO_SQL` where one is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from commands.store.event_store import (
    AppendResult,
    CommandAlreadyLogged,
    CommandLogEntry,
    CommandMetadata,
    ConcurrencyConflict,
    StreamWrite,
)
from commands.store.feed import RecordedEvent

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class NoSql:
    """An executor for code running on the memory store: a statement reaching it is a bug in the test."""

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        raise AssertionError(f"there is no database here, but this ran: {query.strip()[:80]}")


NO_SQL = NoSql()


@dataclass(frozen=True, slots=True)
class LoggedCommand:
    """A command log entry as stored: the result carries the `Positions` the append assigned."""

    command_name: str
    request_hash: bytes
    result: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Row:
    stream_id: str
    stream_type: str
    stream_revision: int
    sequence_number: int
    name: str
    payload: bytes
    commit_time: datetime
    command_id: UUID
    trace_context: bytes

    def event(self, account_id: UUID) -> RecordedEvent:
        """A fresh copy, as each load from the database is."""
        return RecordedEvent(
            account_id=account_id,
            stream_id=self.stream_id,
            stream_type=self.stream_type,
            stream_revision=self.stream_revision,
            sequence_number=self.sequence_number,
            name=self.name,
            payload=_decode(self.payload),
            commit_time=self.commit_time,
            command_id=self.command_id,
            trace_context=_decode(self.trace_context),
        )


@dataclass
class _Account:
    streams: dict[str, list[_Row]] = field(default_factory=dict)
    sequences: dict[str, int] = field(default_factory=dict)
    commands: dict[UUID, LoggedCommand] = field(default_factory=dict)


class MemoryEventStore:
    """Every account's streams, SequenceNumbers and command log, in dicts."""

    def __init__(self) -> None:
        self._accounts: dict[UUID, _Account] = {}

    async def load(
        self, executor: object, account_id: UUID, stream_id: str, after_revision: int = 0
    ) -> list[RecordedEvent]:
        """The stream's events after `after_revision`, oldest first."""
        account = self._accounts.get(account_id, _Account())
        rows = account.streams.get(stream_id, [])
        return [row.event(account_id) for row in rows if row.stream_revision > after_revision]

    async def append(
        self,
        executor: object,
        account_id: UUID,
        writes: Sequence[StreamWrite],
        metadata: CommandMetadata,
        log: CommandLogEntry | None = None,
    ) -> AppendResult:
        """Append all `writes` atomically, or raise and write nothing (see the module's rules)."""
        writes = sorted((w for w in writes if w.events), key=lambda w: w.stream_id)
        if not writes:
            return AppendResult(revisions={}, positions={})
        account = self._accounts.setdefault(account_id, _Account())
        revisions: dict[str, int] = {}
        for write in writes:  # in id order, each write moving its stream, as the SQL does
            actual = revisions.get(write.stream_id, len(account.streams.get(write.stream_id, [])))
            if actual != write.expected_revision:
                raise ConcurrencyConflict(write.stream_id, write.expected_revision, actual)
            revisions[write.stream_id] = actual + len(write.events)
        if log is not None and metadata.command_id in account.commands:
            raise CommandAlreadyLogged(f"command {metadata.command_id} is already logged")
        payloads = [[_encode(pending.payload) for pending in write.events] for write in writes]
        trace_context = _encode(dict(metadata.trace_context))
        commit_time = datetime.now(UTC)
        positions: dict[str, int] = {}
        for write, encoded in zip(writes, payloads, strict=True):
            stream = account.streams.setdefault(write.stream_id, [])
            for pending, payload in zip(write.events, encoded, strict=True):
                sequence = account.sequences.get(write.stream_type, 0) + 1
                account.sequences[write.stream_type] = positions[write.stream_type] = sequence
                stream.append(
                    _Row(
                        write.stream_id,
                        write.stream_type,
                        len(stream) + 1,
                        sequence,
                        pending.name,
                        payload,
                        commit_time,
                        metadata.command_id,
                        trace_context,
                    )
                )
        if log is not None:
            result = _decode(_encode({**log.result, "Positions": positions}))
            account.commands[metadata.command_id] = LoggedCommand(log.command_name, log.request_hash, result)
        return AppendResult(revisions=revisions, positions=positions)

    # What a test may look at besides the interface: all of one account, as stored.

    def streams(self, account_id: UUID) -> dict[str, list[RecordedEvent]]:
        """Every stream of the account, in the order they were first written."""
        account = self._accounts.get(account_id, _Account())
        return {
            stream_id: [row.event(account_id) for row in rows] for stream_id, rows in account.streams.items()
        }

    def sequences(self, account_id: UUID) -> dict[str, int]:
        """Each stream type's last SequenceNumber in the account."""
        return dict(self._accounts.get(account_id, _Account()).sequences)

    def logged(self, account_id: UUID, command_id: UUID) -> LoggedCommand | None:
        """The command log entry of `command_id` in the account, if any."""
        return self._accounts.get(account_id, _Account()).commands.get(command_id)
