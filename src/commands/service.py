"""The command pipeline: parse, (idempotency check), load, decide, append, log; generic over commands."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
from opentelemetry import propagate, trace

from commands.customisation import Customisations
from commands.errors import (
    BusinessRuleViolation,
    CommandError,
    IdempotencyKeyReused,
    InvalidCommand,
    MalformedCommand,
    StreamNotFound,
    UnknownCommand,
)
from commands.handlers import CommandSpec
from commands.model import Aggregate, Command
from commands.registry import COMMANDS
from commands.store.event_store import (
    CommandAlreadyLogged,
    CommandLogEntry,
    CommandMetadata,
    ConcurrencyConflict,
)
from commands.store.snapshots import Snapshots
from commands.store.wakeup import ProjectorWakeup
from commands.stream_cache import StreamCache
from commands.unit_of_work import Store, UnitOfWork
from core import bodies, metrics
from core.problems import field_error
from core.telemetry import traced
from core.tokens import encode_token

tracer = trace.get_tracer("erp.commands")

IDEMPOTENCY_NAMESPACE = UUID("6f1c1f4e-3b7e-4d0c-9d36-5a0a8b1f2c11")

_LAST_EVENT = "SELECT stream_type, sequence_number FROM erp_load_stream($1, $2, $3)"
_FIND_COMMAND = "SELECT command_name, request_hash, result FROM erp_find_command($1, $2)"
_FIND_COMMAND_OR_LEGACY = """
SELECT command_name, request_hash, result FROM (
    SELECT 1 AS preference, * FROM erp_find_command($1, $2)
    UNION ALL SELECT 2, * FROM erp_find_command($1, $3)
) found ORDER BY preference LIMIT 1
"""


class _Unverified(Exception):
    """A try on cached state failed or was doubtful; it wrote nothing, so decide again on loaded state."""


class CommandResult(msgspec.Struct, frozen=True, rename="pascal"):
    """What a successful command returns (and what a retried one returns again)."""

    stream_id: str
    revision: int
    positions: dict[str, int]
    consistency_token: str

    @classmethod
    def of(cls, stream_id: str, revision: int, positions: dict[str, int]) -> CommandResult:
        return cls(stream_id, revision, positions, encode_token(positions))


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    spec: CommandSpec
    message: Command
    request_hash: bytes


def command_id_for(idempotency_key: str | None) -> tuple[UUID, bool]:
    """(command id, whether it came from the client's Idempotency-Key).

    A key is opaque: its exact text decides, so `<uuid>`, the same upper-cased and in braces are three
    keys (a UUID key used to be taken as that UUID, so all three were one command).
    """
    if idempotency_key is None:
        return uuid.uuid4(), False
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, idempotency_key), True


def legacy_command_id(idempotency_key: str | None) -> UUID | None:
    """The id a key that reads as a UUID had before keys were compared exactly (the UUID itself), so
    that a command logged before that change and retried after it is still answered from the log.

    New commands are never logged under it, so it finds only what older versions logged. It can go
    once no command logged before the change can still be retried.
    """
    if idempotency_key is None:
        return None
    try:
        return UUID(idempotency_key)
    except ValueError:
        return None


class CommandService:
    """Runs commands for one account; re-decides on a concurrent append unless a revision was pinned.

    With a stream cache, the first try decides on cached state with no load at
    all; anything doubtful (a conflict, a refusal, a stream only read) sends the
    command through the normal, loading tries, so the cache changes speed only.
    """

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        store: Store,
        commands: dict[str, CommandSpec] | None = None,
        max_attempts: int = 10,
        wakeup: ProjectorWakeup | None = None,
        cache: StreamCache | None = None,
        customisations: Customisations | None = None,
        snapshots: Snapshots | None = None,
    ) -> None:
        self._pool = pool
        self._snapshots = snapshots
        self._wakeup = wakeup
        self._cache = cache
        self.customisations = customisations or Customisations(pool)
        self._store = store
        self._commands = COMMANDS if commands is None else commands
        self._max_attempts = max_attempts

    def parse(self, name: str, body: bytes) -> ParsedCommand:
        """Validate a command body (strictly, through `core.bodies.decode` like every JSON body); raises
        UnknownCommand, MalformedCommand (not JSON, not UTF-8, nested too deeply) or InvalidCommand."""
        spec = self._commands.get(name)
        if spec is None:
            known = ", ".join(sorted(self._commands))
            raise UnknownCommand(f"there is no command named {name!r}; known commands: {known}")
        try:
            message = bodies.decode(body, spec.message)
        except bodies.MalformedBody as error:
            raise MalformedCommand(str(error)) from None
        except bodies.InvalidBody as error:
            found = field_error(str(error))
            raise InvalidCommand(f"{name}: {error}", found.pointer, found.detail) from None
        return self.prepare(name, message)

    def prepare(self, name: str, message: Command) -> ParsedCommand:
        """A command already decoded into its type (the API's typed routes do that)."""
        spec = self._commands[name]
        canonical = msgspec.json.encode([name, message])
        return ParsedCommand(spec, message, hashlib.sha256(canonical).digest())

    async def execute(
        self, account_id: UUID, command: ParsedCommand, idempotency_key: str | None = None
    ) -> CommandResult:
        """Run a parsed command to completion: exactly one append, or a refusal that wrote nothing."""
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await self._execute(account_id, command, idempotency_key)
            outcome = "ok"
            return result
        except ConcurrencyConflict:
            outcome = "conflict"
            raise
        except (BusinessRuleViolation, StreamNotFound, IdempotencyKeyReused):
            outcome = "refused"
            raise
        except InvalidCommand:
            outcome = "invalid"
            raise
        finally:
            labels = {"command": command.spec.name, "outcome": outcome}
            metrics.COMMANDS.add(1, labels)
            metrics.COMMAND_DURATION.record(time.perf_counter() - started, labels)

    async def _execute(
        self, account_id: UUID, command: ParsedCommand, idempotency_key: str | None
    ) -> CommandResult:
        command_id, idempotent = command_id_for(idempotency_key)
        legacy = legacy_command_id(idempotency_key)
        spec = command.spec
        if spec.element:
            custom = getattr(command.message, "custom", None)
            elements = (spec.element, *spec.alternatives)
            await self.customisations.check_one_of(account_id, elements, custom, spec.creates)
        with traced(
            tracer,
            f"command {command.spec.name}",
            attributes={
                "erp.account_id": str(account_id),
                "erp.command": command.spec.name,
                "erp.command_id": str(command_id),
            },
        ) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            metadata = CommandMetadata(command_id, command_id, command_id, carrier)
            if self._cache is not None:
                try:
                    return self._traced(
                        span,
                        await self._attempt(
                            account_id, command, metadata, idempotent, trusted=True, legacy=legacy
                        ),
                    )
                except _Unverified:
                    pass  # decide again on loaded state
            pinned = command.message.expected_revision is not None
            rechecked = False
            for attempt in range(1, self._max_attempts + 1):
                try:
                    result = await self._attempt(account_id, command, metadata, idempotent, legacy=legacy)
                except ConcurrencyConflict:
                    # A pinned revision is final, except that an idempotent command looks once
                    # more: the conflicting append may have been its own concurrent retry.
                    if attempt == self._max_attempts or (pinned and (not idempotent or rechecked)):
                        raise
                    rechecked = pinned
                except CommandAlreadyLogged:
                    # A concurrent retry of the same Idempotency-Key won; the next attempt returns its result.
                    if attempt == self._max_attempts:
                        raise
                else:
                    return self._traced(span, result)
                await asyncio.sleep(random.uniform(0, 0.002 * attempt))
        raise AssertionError("unreachable")

    @staticmethod
    def _traced(span: trace.Span, result: CommandResult) -> CommandResult:
        span.set_attribute("erp.stream_id", result.stream_id)
        span.set_attribute("erp.revision", result.revision)
        for stream_type, position in result.positions.items():
            span.set_attribute(f"erp.position.{stream_type}", position)
        return result

    async def _attempt(
        self,
        account_id: UUID,
        command: ParsedCommand,
        metadata: CommandMetadata,
        idempotent: bool,
        *,
        trusted: bool = False,
        legacy: UUID | None = None,
    ) -> CommandResult:
        """One try. A `trusted` try decides on cached state and raises _Unverified on any doubt."""
        if not trusted:
            return await self._decide_and_append(account_id, command, metadata, idempotent, trusted, legacy)
        try:
            return await self._decide_and_append(account_id, command, metadata, idempotent, trusted, legacy)
        except (CommandError, ConcurrencyConflict, CommandAlreadyLogged) as error:
            if isinstance(error, InvalidCommand | IdempotencyKeyReused):
                raise
            raise _Unverified from error

    async def _decide_and_append(
        self,
        account_id: UUID,
        command: ParsedCommand,
        metadata: CommandMetadata,
        idempotent: bool,
        trusted: bool,
        legacy: UUID | None = None,
    ) -> CommandResult:
        if idempotent:
            logged = await self._logged(account_id, metadata.command_id, legacy)
            if logged is not None:
                return self._replayed(command, logged)
        uow = UnitOfWork(
            self._pool, account_id, self._store, self._cache, trust_cache=trusted, snapshots=self._snapshots
        )
        uow.check_custom = partial(self.customisations.check, account_id)
        expected = command.message.expected_revision
        try:
            aggregate = await command.spec.handler(command.message, uow)
        except (BusinessRuleViolation, StreamNotFound) as refusal:
            if idempotent:
                # Our own concurrent retry may have committed since we looked: answer as it did.
                logged = await self._logged(account_id, metadata.command_id, legacy)
                if logged is not None:
                    return self._replayed(command, logged)
            primary = uow.primary
            stale = expected is not None and primary is not None and primary.revision != expected
            if stale and isinstance(refusal, BusinessRuleViolation):
                assert expected is not None and primary is not None
                raise ConcurrencyConflict(primary.stream_id, expected, primary.revision) from None
            raise
        if expected is not None and aggregate.revision != expected:
            raise ConcurrencyConflict(aggregate.stream_id, expected, aggregate.revision)
        if trusted and uow.read_without_writing:
            raise _Unverified("a stream was only read; its cached state cannot be trusted")
        if not aggregate.pending_events():  # an erasure again: answered as the first one was
            return CommandResult.of(
                aggregate.stream_id, aggregate.revision, await self._last_position(account_id, aggregate)
            )
        revision = aggregate.revision + len(aggregate.pending_events())
        log = None
        if idempotent:
            log = CommandLogEntry(
                command.spec.name,
                command.request_hash,
                {"StreamId": aggregate.stream_id, "Revision": revision},
            )
        appended = await uow.commit(metadata, log)
        if self._wakeup is not None and appended.positions:
            self._wakeup.poke(appended.positions)
        return CommandResult.of(aggregate.stream_id, revision, appended.positions)

    async def _last_position(self, account_id: UUID, aggregate: Aggregate) -> dict[str, int]:
        """The position of the stream's last event: what its append answered."""
        row = await self._pool.fetchrow(_LAST_EVENT, account_id, aggregate.stream_id, aggregate.revision - 1)
        return {} if row is None else {row["stream_type"]: row["sequence_number"]}

    async def _logged(self, account_id: UUID, command_id: UUID, legacy: UUID | None) -> asyncpg.Record | None:
        """The command's log entry, under its id or (logged by an older version) its key's legacy id."""
        if legacy is None:
            return await self._pool.fetchrow(_FIND_COMMAND, account_id, command_id)
        return await self._pool.fetchrow(_FIND_COMMAND_OR_LEGACY, account_id, command_id, legacy)

    @staticmethod
    def _replayed(command: ParsedCommand, logged: asyncpg.Record) -> CommandResult:
        if logged["command_name"] != command.spec.name or logged["request_hash"] != command.request_hash:
            raise IdempotencyKeyReused(
                f"this Idempotency-Key was already used for a different {logged['command_name']} "
                "request; use a new key for a new command"
            )
        result = logged["result"]
        return CommandResult.of(result["StreamId"], result["Revision"], result["Positions"])
