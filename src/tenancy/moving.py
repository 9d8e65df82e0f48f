"""Moving an account to another tenant database online: the steps a workflow runs, each idempotent
(a retried step goes on where it stopped).

1. `prepare`: unless the catalog has the account in the source, nothing is done; the target takes
   the account as `arriving` (its writes are refused there), and what an abandoned earlier move
   left of it there is removed.
2. `copy_read_models`: the account's read models, checkpoints and parked events, as they are in one
   snapshot of the source (exported, so that 50 tables a transaction share it), and a checkpoint
   moves only with the rows it covers. The target's projector goes on from those checkpoints as
   events arrive.
3. `copy_events`, while the account keeps taking commands: its events in SequenceNumber order,
   chunk by chunk, each chunk one target transaction with the revisions of the streams it touches,
   the counters it advances (so the target's projector finds them) and the logged commands it carries.
4. `fence_source`: the source refuses the account's writes (`leaving`), once the writes that did
   not see the fence have committed. From here its commands are answered 503, for a few seconds.
5. `finish_copy`: the events the account took since step 3, its customisations and its data
   subjects' keys; then the copy is checked against the source (counters, streams, logged commands,
   customisations, keys and erasures). A difference
   abandons the move (`abandon`: the source takes writes again, the target's copy is removed).
6. `switch`: the target lifts its fence, the catalog routes the account there, and the source's fence
   says `left`, so a command that still arrives on an old route is refused, never stored.
7. (The workflow waits until no API can still hold the old route: twice ERP_CACHE_TTL. The switch
   tells every API to forget it at once; the wait holds when Redis did not carry that.)
8. `purge`: the source's copy is removed, in chunks. Its fence stays, as a tombstone.

SequenceNumbers, revisions, command ids and commit times are copied as they are, so consistency
tokens issued before the move hold after it, and a command retried with its Idempotency-Key is
answered from the copied log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from core.invalidations import ROUTES, Invalidations
from tenancy.catalog import AccountCatalog
from tenancy.copying import (
    OWN_COLUMNS,
    STORE_TABLES,
    account_tables,
    common_columns,
    pipe,
    read_side,
    read_side_rows,
    scope,
)
from tenancy.fences import ARRIVING, LEAVING, LEFT, fence, fence_of, lift
from tenancy.routing import Databases

EVENTS_PER_CHUNK = 5000
"""Events per copied chunk (one target transaction)."""
ROWS_PER_DELETE = 5000
"""Rows per removed chunk (one transaction)."""
TABLES_PER_TRANSACTION = 50
"""Read-model tables copied per transaction (the seed's model has 2,830)."""

_COUNTERS = "SELECT stream_type, last_sequence FROM stream_sequences WHERE account_id = $1"
_EVENT_RANGE = "account_id = $1 AND stream_type = $2 AND sequence_number > $3 AND sequence_number <= $4"
_STREAMS_OF_RANGE = f"""
INSERT INTO streams AS s (account_id, stream_id, stream_type, revision)
SELECT account_id, stream_id, stream_type, max(stream_revision) FROM events WHERE {_EVENT_RANGE}
GROUP BY account_id, stream_id, stream_type
ON CONFLICT (account_id, stream_id) DO UPDATE SET revision = greatest(s.revision, EXCLUDED.revision)
"""
_ADVANCE_COUNTER = """
INSERT INTO stream_sequences AS s (account_id, stream_type, last_sequence, changed)
VALUES ($1, $2, $3, pg_current_xact_id())
ON CONFLICT (account_id, stream_type)
DO UPDATE SET last_sequence = greatest(s.last_sequence, EXCLUDED.last_sequence), changed = EXCLUDED.changed
"""
_COMMANDS_OF_RANGE = """
SELECT DISTINCT e.command_id FROM events e
WHERE e.account_id = $1 AND e.stream_type = $2 AND e.sequence_number > $3 AND e.sequence_number <= $4
  AND NOT EXISTS (SELECT FROM command_log c WHERE c.account_id = e.account_id AND c.command_id = e.command_id)
"""
_SUMMARY = """
SELECT (SELECT coalesce(jsonb_object_agg(stream_type, last_sequence), '{}')
        FROM stream_sequences WHERE account_id = $1) AS counters,
       (SELECT count(*) FROM events WHERE account_id = $1) AS events,
       (SELECT count(*) FROM streams WHERE account_id = $1) AS streams,
       (SELECT coalesce(sum(revision), 0) FROM streams WHERE account_id = $1) AS revisions,
       (SELECT count(*) FROM command_log WHERE account_id = $1) AS commands,
       (SELECT count(*) FROM customisations WHERE account_id = $1) AS customisations,
       (SELECT count(*) FROM subject_keys WHERE account_id = $1) AS subject_keys,
       (SELECT count(*) FROM subject_keys WHERE account_id = $1 AND key IS NULL) AS erased_subjects
"""

Progress = Callable[[int, int], None]
"""Told (events copied, events to copy) after each chunk: heartbeats."""


class MoveAbandoned(RuntimeError):
    """The copy differs from the source: the move cannot switch (and is undone)."""


@dataclass(frozen=True, slots=True)
class MoveStep:
    """Which account moves, from where to where, in which move."""

    account_id: UUID
    source: str
    target: str
    move_id: UUID


@dataclass(frozen=True, slots=True)
class Copied:
    events: int
    rows: int


class AccountMover:
    """The steps of moving an account between two tenant databases (see the module's docstring)."""

    def __init__(
        self, databases: Databases, catalog: AccountCatalog, invalidations: Invalidations | None = None
    ) -> None:
        self._databases = databases
        self._catalog = catalog
        self._invalidations = invalidations

    def _pools(self, step: MoveStep) -> tuple[asyncpg.Pool[Any], asyncpg.Pool[Any]]:
        return self._databases.pool(step.source), self._databases.pool(step.target)

    async def prepare(self, step: MoveStep) -> None:
        """Step 1: the target fences the account as arriving, and whatever it holds of it (from an
        abandoned or an earlier try) goes. MoveAbandoned, with nothing done, unless the catalog has
        the account in the source."""
        account = await self._catalog.get(step.account_id)
        if account is None or account.database != step.source:
            where = account.database if account is not None else "no database"
            raise MoveAbandoned(
                f"account {step.account_id} is in {where}, not {step.source}; nothing was done"
            )
        _, target = self._pools(step)
        held = await fence_of(target, step.account_id)
        if held is None or held[0] != ARRIVING or held[2] != step.move_id:
            async with target.acquire() as connection, connection.transaction():
                await fence(connection, step.account_id, ARRIVING, step.source, step.move_id)
        await self.purge(step.account_id, step.target)

    async def copy_read_models(self, step: MoveStep) -> int:
        """Step 2: the read side as it is in one snapshot of the source (a checkpoint moves only with
        the rows it covers, so they agree), 50 tables a transaction (thousands at once would overflow
        the lock table); how many rows. The source's projector is not held up meanwhile."""
        source, target = self._pools(step)
        rows = 0
        async with source.acquire() as holder, holder.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await holder.fetchval("SELECT pg_export_snapshot()")
            tables = read_side(await account_tables(holder))
            async with source.acquire() as s, target.acquire() as t:
                for first in range(0, len(tables), TABLES_PER_TRANSACTION):
                    async with s.transaction(isolation="repeatable_read", readonly=True), t.transaction():
                        await s.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                        await scope(s, step.account_id)
                        await scope(t, step.account_id)
                        for table in tables[first : first + TABLES_PER_TRANSACTION]:
                            columns = await common_columns(s, t, table)
                            columns = [c for c in columns if c not in OWN_COLUMNS.get(table, ())]
                            where = read_side_rows(table)
                            await t.execute(f"DELETE FROM {table} WHERE {where}", step.account_id)
                            rows += await pipe(s, t, table, columns, where, step.account_id)
        return rows

    async def copy_events(self, step: MoveStep, progress: Progress | None = None) -> int:
        """Steps 3 and 5: every event the source has and the target lacks, in order; how many."""
        source, target = self._pools(step)
        copied = 0
        async with source.acquire() as s, target.acquire() as t:
            heads, have = [await _counters(c, step.account_id) for c in (s, t)]
            total = sum(head - min(have.get(kind, 0), head) for kind, head in heads.items())
            # customisations and keys too: a table that differs must stop the move before the fence
            columns = {
                table: await common_columns(s, t, table)
                for table in ("events", "command_log", "customisations", "subject_keys")
            }
            for stream_type, head in sorted(heads.items()):
                after = have.get(stream_type, 0)
                while after < head:
                    upto = min(head, after + EVENTS_PER_CHUNK)
                    copied += await self._copy_chunk(s, t, step.account_id, stream_type, after, upto, columns)
                    after = upto
                    if progress is not None:
                        progress(copied, total)
        return copied

    @staticmethod
    async def _copy_chunk(
        s: asyncpg.Connection[Any],
        t: asyncpg.Connection[Any],
        account_id: UUID,
        stream_type: str,
        after: int,
        upto: int,
        columns: dict[str, list[str]],
    ) -> int:
        bounds = (account_id, stream_type, after, upto)
        async with s.transaction(), t.transaction():
            await scope(s, account_id)
            await scope(t, account_id)
            events = await pipe(s, t, "events", columns["events"], _EVENT_RANGE, *bounds)
            if events != upto - after:  # undone with the chunk: the next try starts here again
                found = f"{events} events in the source"
                raise MoveAbandoned(f"{stream_type} {after + 1}..{upto} of account {account_id}: {found}")
            await t.execute(_STREAMS_OF_RANGE, *bounds)
            await t.execute(_ADVANCE_COUNTER, account_id, stream_type, upto)
            logged = [r["command_id"] for r in await t.fetch(_COMMANDS_OF_RANGE, *bounds)]
            if logged:
                await pipe(
                    s, t, "command_log", columns["command_log"], "account_id = $1 AND command_id = ANY($2)",
                    account_id, logged,
                )  # fmt: skip
        return events

    async def fence_source(self, step: MoveStep) -> None:
        """Step 4: the source refuses the account's writes from now on (the ones in flight commit first)."""
        source, _ = self._pools(step)
        held = await fence_of(source, step.account_id)
        if held is not None and held[2] == step.move_id:
            return  # fenced already (a retry), perhaps `left` by now
        async with source.acquire() as connection, connection.transaction():
            await fence(connection, step.account_id, LEAVING, step.target, step.move_id)

    async def finish_copy(self, step: MoveStep, progress: Progress | None = None) -> int:
        """Step 5: the rest of the events, the customisations and the data subjects' keys (made and
        erased only by writes, which the fence now refuses); MoveAbandoned if the copy differs."""
        copied = await self.copy_events(step, progress)
        source, target = self._pools(step)
        async with source.acquire() as s, target.acquire() as t, s.transaction(), t.transaction():
            await scope(s, step.account_id)
            await scope(t, step.account_id)
            for table in ("customisations", "subject_keys"):
                await t.execute(f"DELETE FROM {table} WHERE account_id = $1", step.account_id)
                columns = await common_columns(s, t, table)
                await pipe(s, t, table, columns, "account_id = $1", step.account_id)
            ours, theirs = [dict(await c.fetchrow(_SUMMARY, step.account_id) or {}) for c in (s, t)]
        if ours != theirs:
            raise MoveAbandoned(
                f"the copy of account {step.account_id} differs: source {ours}, target {theirs}"
            )
        return copied

    async def switch(self, step: MoveStep) -> None:
        """Step 6: the account lives in the target from now on."""
        source, target = self._pools(step)
        held = await fence_of(target, step.account_id)
        if held is not None and held[2] == step.move_id:
            await lift(target, step.account_id)
        await self._catalog.relocate(step.account_id, step.source, step.target)
        async with source.acquire() as connection, connection.transaction():
            await fence(connection, step.account_id, LEFT, step.target, step.move_id)
        if self._invalidations is not None:  # every API forgets the old route at once
            await self._invalidations.publish(ROUTES, step.account_id)

    async def abandon(self, step: MoveStep) -> None:
        """Undo a move that did not switch: the source takes the account's writes again, and the
        target's copy is removed."""
        source, target = self._pools(step)
        held = await fence_of(source, step.account_id)
        if held is not None and held[0] == LEAVING and held[2] == step.move_id:
            await lift(source, step.account_id)
        held = await fence_of(target, step.account_id)
        if held is not None and held[0] == ARRIVING and held[2] == step.move_id:
            await self.purge(step.account_id, step.target)
            await lift(target, step.account_id)

    async def purge(
        self, account_id: UUID, database: str, progress: Callable[[int], None] | None = None
    ) -> int:
        """Step 8: remove every row of an account that does not live in `database` (its fence says
        arriving or left), in chunks; how many rows. The fence stays."""
        return await purge_account(self._databases.pool(database), account_id, database, progress)


async def purge_account(
    pool: asyncpg.Pool[Any],
    account_id: UUID,
    database: str,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Remove every row of the account from `database` (whose pool is `pool`), in chunks (a retry
    goes on where it stopped); how many rows. Only for an account fenced there as arriving or left
    (a move's old copy, or an account offboarded): one that lives there keeps its rows. The fence
    stays."""
    held = await fence_of(pool, account_id)
    if held is None or held[0] == LEAVING:
        raise RuntimeError(f"account {account_id} lives in {database}: its rows there are not removed")
    removed = 0
    async with pool.acquire() as connection:
        tables = await account_tables(connection)
        async with connection.transaction():
            await scope(connection, account_id)
            # First what the projector finds work by, then its checkpoints (waiting out a batch
            # that holds them): it then has nothing of this account left to apply.
            await connection.execute("DELETE FROM stream_sequences WHERE account_id = $1", account_id)
            await connection.execute("DELETE FROM projection_checkpoints WHERE account_id = $1", account_id)
        for table in [*read_side(tables), *(t for t in STORE_TABLES if t in tables)]:
            while True:
                async with connection.transaction():
                    await scope(connection, account_id)
                    await connection.execute(
                        "SELECT set_config('erp.purging_account', $1, true)", str(account_id)
                    )
                    status = await connection.execute(
                        f"DELETE FROM {table} WHERE account_id = $1 AND ctid = ANY(ARRAY("
                        f"SELECT ctid FROM {table} WHERE account_id = $1 LIMIT {ROWS_PER_DELETE}))",
                        account_id,
                    )
                count = int(status.split()[-1])
                removed += count
                if progress is not None:
                    progress(removed)
                if count < ROWS_PER_DELETE:
                    break
    return removed


async def _counters(connection: asyncpg.Connection[Any], account_id: UUID) -> dict[str, int]:
    """The account's last SequenceNumber per stream type in this database."""
    async with connection.transaction():
        await scope(connection, account_id)
        return {r["stream_type"]: r["last_sequence"] for r in await connection.fetch(_COUNTERS, account_id)}
