"""A read model's fan-out: its copies refreshed from their sources' changes, a chunk at a time.

The projector of a source read model records a job for each changed source row
(`queries.fan_out_jobs`); the target read model's fan-out takes the jobs in turn, the least recently
worked first, so that one account's million rows never hold up another account's job. A chunk is
one short transaction:

1. lock the job (SKIP LOCKED: two fan-outs, a zombie's and a new one's, take different jobs) and the
   read model's writer lock (shared, as its batches take it: a switch of versions waits); the first
   chunk of a job (or of one started over) also locks the read model's checkpoints of the job's
   account, so that no batch that read the source before the change is still to commit: one that
   holds them has the job wait its next turn (SKIP LOCKED, so it never waits on a batch, nor a
   one-account rebuild). Batches claimed after that first chunk read the source as changed;
2. read the source's value, then set it on the next rows after the job's cursor that refer to the
   source (in (created_at, id) order, from the reference's index), with one UPDATE of a key range;
3. move the cursor, or delete the job when no row is left.

A killed worker leaves its chunk rolled back and the cursor where the last commit put it: the next
fan-out goes on from there. The chunk's size adapts towards `CHUNK_SECONDS`; between the first chunk
and the last, the account's own projector batches go on. When a job is done,
the read model's position for the job's stream type is announced (`Notifier`): a notification for a
read model means its fan-out for that position is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from queries import fan_out_jobs
from queries.model_projection import ModelProjection
from queries.model_tables import table_name
from queries.notifications import Notifier, ProjectionAdvanced
from queries.projector.checkpoints import Checkpoints
from queries.shown import Copy

log = logging.getLogger(__name__)

FIRST_CHUNK = 2_000
MAX_CHUNK = 50_000
CHUNK_SECONDS = 0.1
"""What a chunk should take (other accounts' jobs wait their turn behind it)."""
PAUSE = 0.25
"""After a chunk that leaves its job unfinished, a pause of this share of the chunk's time: the
other accounts' batches and commits get the machine between chunks."""
DEFERRED_PAUSE = 0.02
"""Seconds a fan-out waits after sending a job to the back of the queue."""
ANALYZE_AFTER = 100_000
"""A job that changed this many rows has its table analyzed when it is done."""

_NEXT = """
SELECT copy, account_id, source_id, stream_type, position, cursor_at, cursor_id, rows
FROM fan_out_jobs WHERE projection = $1
ORDER BY updated_at
LIMIT 1
FOR UPDATE SKIP LOCKED
"""
# Whether every checkpoint of the read model for the account could be locked (none held by a batch).
_LOCK_ACCOUNT = """
SELECT (SELECT count(*) FROM projection_checkpoints WHERE projection = $1 AND account_id = $2)
     = (SELECT count(*) FROM (SELECT 1 FROM projection_checkpoints WHERE projection = $1 AND account_id = $2
                              ORDER BY stream_type FOR UPDATE SKIP LOCKED) locked)
"""
_LATER = """
UPDATE fan_out_jobs SET updated_at = now()
WHERE projection = $1 AND account_id = $2 AND copy = $3 AND source_id = $4 AND stream_type = $5
"""
_KEY = "(created_at, id) > ($3, $4::uuid)"
"""After the cursor: a range of the reference's index (a job not begun starts before every row)."""
BEFORE_ALL = (datetime.min.replace(tzinfo=UTC), UUID(int=0))
_MOVE = """
UPDATE fan_out_jobs SET cursor_at = $6, cursor_id = $7, rows = rows + $8, updated_at = now()
WHERE projection = $1 AND account_id = $2 AND copy = $3 AND source_id = $4 AND stream_type = $5
"""
_DONE = """
DELETE FROM fan_out_jobs
WHERE projection = $1 AND account_id = $2 AND copy = $3 AND source_id = $4 AND stream_type = $5
"""


class FanOut:
    """Refreshes one read model's copies from other read models, job by job, chunk by chunk."""

    def __init__(
        self, pool: asyncpg.Pool[Any], projection: ModelProjection, notifier: Notifier | None
    ) -> None:
        self.pool = pool
        self.projection = projection
        self.notifier = notifier
        self.copies: dict[str, Copy] = {c.name: c for c in projection.copies if not c.local}
        self.writers = Checkpoints(projection.name, projection.stream_types)
        self.chunk = FIRST_CHUNK
        self.rows = 0
        self.deferred = 0
        """Jobs sent to the back of the queue because a batch held their account's checkpoints."""
        """Rows it has refreshed (for the bench and the logs)."""
        shows = projection.shows
        self._scope = shows.scope(projection.base_name) if shows is not None else None
        self._cascades: dict[str, tuple[Copy, ...]] = {
            c.name: shows.copies_from(c.element.name, c.column) if shows is not None else ()
            for c in self.copies.values()
        }
        """Per copy, the copies of its column, which a chunk refreshes (or records) in turn."""

    async def run_chunk(self) -> bool:
        """One chunk of the job whose turn it is; False when no job is waiting (or all are taken)."""
        started = time.monotonic()
        async with self.pool.acquire() as connection, connection.transaction():
            job = await connection.fetchrow(_NEXT, self.projection.name)
            if job is None:
                return False
            ids = (self.projection.name, job["account_id"], job["copy"], job["source_id"], job["stream_type"])
            copy = self.copies.get(job["copy"])
            if copy is None:  # a copy the model no longer declares: nothing to refresh
                await connection.execute(_DONE, *ids)
                return True
            await self.writers.hold_writers(connection)  # as the read model's batches (a switch waits)
            if job["cursor_at"] is None and not await connection.fetchval(
                _LOCK_ACCOUNT, self.projection.name, job["account_id"]
            ):
                # A batch of the account holds its checkpoints: it may have read the source before
                # the change and not have committed yet. Its rows must be seen: later, then.
                await connection.execute(_LATER, *ids)
                self.deferred += 1
                return True
            cascades = self._cascades.get(copy.name, ())
            done, changed, rows, last = await self._chunk(connection, copy, job, bool(cascades))
            if done:  # committed durably: a wait told the fan-out is done is not told so twice
                await connection.execute(_DONE, *ids)
            else:
                await connection.execute(_MOVE, *ids, last[0], last[1], changed)
                # A chunk before the last need not wait for the WAL flush: lost in a crash, it and
                # its cursor are lost together, and it is done again. Other accounts' commits wait less.
                await connection.execute("SET LOCAL synchronous_commit = off")
            if rows:
                await self._cascade(connection, cascades, job, rows)
        self.rows += changed
        seconds = time.monotonic() - started
        self._adapt(changed, seconds)
        if done:
            if job["rows"] + changed >= ANALYZE_AFTER:
                # Most of the table's rows of that value changed: the planner's statistics say
                # otherwise until autovacuum analyzes it (a minute or more), and a query filtering by
                # the new value would be planned as if no row had it.
                await self.pool.execute(f"ANALYZE {table_name(copy.element, self.projection.suffix)}")
            await self._announce(job["account_id"], job["stream_type"])
        elif PAUSE:
            await asyncio.sleep(seconds * PAUSE)  # room for the other accounts' work, between chunks
        return True

    async def _chunk(
        self, connection: asyncpg.Connection[Any], copy: Copy, job: asyncpg.Record, returning: bool
    ) -> tuple[bool, int, list[UUID], tuple[Any, Any]]:
        """Set the source's value on the next chunk of rows; (the last chunk, how many rows it changed,
        their ids if `returning`, the cursor)."""
        table = table_name(copy.element, self.projection.suffix)
        account_id, source_id = job["account_id"], job["source_id"]
        value = await connection.fetchval(f"SELECT {copy.lookup('$1', '$2')}", account_id, source_id)
        after = (job["cursor_at"], job["cursor_id"]) if job["cursor_at"] is not None else BEFORE_ALL
        bound = await connection.fetchrow(
            f"SELECT created_at, id FROM {table} WHERE account_id = $1 AND {copy.via} = $2 AND {_KEY} "
            "ORDER BY created_at, id OFFSET $5 LIMIT 1",
            account_id,
            source_id,
            *after,
            self.chunk - 1,
        )
        upto = "" if bound is None else "AND (created_at, id) <= ($6, $7::uuid)"
        update = (
            f"UPDATE {table} SET {copy.column} = $5 "
            f"WHERE account_id = $1 AND {copy.via} = $2 AND {_KEY} {upto} "
            f"AND {copy.column} IS DISTINCT FROM $5"
        )
        arguments = (
            account_id,
            source_id,
            *after,
            value,
            *((bound["created_at"], bound["id"]) if bound is not None else ()),
        )
        rows: list[UUID] = []
        if returning:  # what copies this column needs the rows' ids
            rows = [r["id"] for r in await connection.fetch(f"{update} RETURNING id", *arguments)]
            changed = len(rows)
        else:
            changed = int((await connection.execute(update, *arguments)).split()[-1])
        if bound is None:
            return True, changed, rows, after
        return False, changed, rows, (bound["created_at"], bound["id"])

    async def _cascade(
        self,
        connection: asyncpg.Connection[Any],
        cascades: tuple[Copy, ...],
        job: asyncpg.Record,
        rows: list[UUID],
    ) -> None:
        """What copies the refreshed column, in turn: refreshed or recorded as the projector would."""
        further = {
            then: {(job["account_id"], row): (job["stream_type"], job["position"]) for row in rows}
            for then in cascades
        }
        await self.projection.refresh(connection, further)

    def _adapt(self, rows: int, seconds: float) -> None:
        if rows >= self.chunk // 2 and seconds < CHUNK_SECONDS / 2:  # rows changed: a full chunk
            self.chunk = min(MAX_CHUNK, self.chunk * 2)
        elif seconds > CHUNK_SECONDS * 2:
            self.chunk = max(FIRST_CHUNK // 4, self.chunk // 2)

    async def _announce(self, account_id: UUID, stream_type: str) -> None:
        if self.notifier is None or self._scope is None:
            return
        reached = await fan_out_jobs.positions(
            self.pool, self._scope.owners, self._scope.fan_outs, account_id, [stream_type]
        )
        if stream_type in reached:
            advanced = ProjectionAdvanced(self.projection.name, account_id, stream_type, reached[stream_type])
            await self.notifier.publish([advanced])

    async def drain(self) -> int:
        """Every waiting job, to its end; the rows it refreshed."""
        before = self.rows
        while await self.run_chunk():
            pass
        return self.rows - before

    async def run(self, wake: asyncio.Event, stop: asyncio.Event | None, poll_interval: float = 1.0) -> None:
        """Work the jobs until `stop` is set: all that wait, then sleep until woken (or polled)."""
        while stop is None or not stop.is_set():
            wake.clear()
            worked = True
            while worked:
                deferred = self.deferred
                worked = await self.run_chunk()
                if self.deferred != deferred:
                    # The batch (or a one-account rebuild) that holds the account is not asked again
                    # at once: a job that waits for it costs no busy loop.
                    await asyncio.sleep(DEFERRED_PAUSE)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=poll_interval)
