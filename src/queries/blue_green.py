"""Building a new version of a read model beside the live one, and switching queries to it.

The steps, each one of the build workflow's activities (`workflows.workflows.BuildProjectionWorkflow`):

1. `prepare`: record the version (`queries.versions`), create its tables (`rm_<element>__v<N>`)
   and a checkpoint at 0 for every (account, stream type) with events (`<name>@v<N>`).
2. `bulk_pass`: replay every account's events into them in chunks, in account order. Each chunk is
   one short transaction: it locks its pairs' checkpoints, reads their next events, folds them into
   rows (`ModelProjection.apply_bulk`: each row read once and written once, with COPY), and moves the
   checkpoints. Its size adapts so that it commits in about half a second. A retried attempt goes
   on from the cursor of its last heartbeat; the checkpoints say where each pair is.
3. `catch_up`: the projector's batches (`Projector`) take the version to the store's head.
4. `switch`: alone holding the projection's writer lock (the live projector's batches wait), the
   version catches up with the live checkpoints, then, in the same transaction, takes the live
   tables' names, their checkpoints and parked events; the live version is retired under
   `rm_<element>__v<old>`. Queries see the old tables until that commit and the new ones after it,
   for every account at once, and never a version behind what a client was told.
5. `drop` (after a grace period) and `abort` (the new version's tables dropped; nothing else changes).

Meanwhile the live version keeps serving queries and projecting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from commands.store.feed import EventFeed, Position
from commands.store.sealing import NO_KEYS, SEALED, Keys
from core.heap import collect_young, collections_paused
from queries import versions
from queries.model_projection import ModelProjection
from queries.notifications import Notifier, ProjectionAdvanced
from queries.projector.batch import REDO_ONE_BY_ONE, Projector
from queries.projector.checkpoints import Checkpoints, Pair
from queries.projector.parking import held_streams
from queries.row_folds import CannotFold, Stored

FIRST_CHUNK = 5_000
"""Events of the first chunk; later ones grow or shrink towards CHUNK_SECONDS."""
MAX_CHUNK = 100_000
CHUNK_SECONDS = 0.5
PAIRS_PER_LOOK = 1_000
COLLECT_EVERY = 16
"""Chunks between two collections of the young generations during a bulk pass."""

# The next pairs after the cursor, in key order from the counters' primary key, each with its
# checkpoint by its key: a look costs the pairs it returns, not every account's (a join let the
# planner hash both tables whole, 12 ms a look at 10,000 accounts). A pair with no checkpoint of
# this version (its first event came after prepare) reads as done: the catch-up takes it.
_NEXT_PAIRS = """
SELECT s.account_id, s.stream_type, s.last_sequence,
       coalesce((SELECT c.position FROM projection_checkpoints c
                 WHERE c.projection = $1 AND c.account_id = s.account_id
                   AND c.stream_type = s.stream_type), s.last_sequence) AS position
FROM stream_sequences s
WHERE s.stream_type = ANY($2::text[]) AND (s.account_id, s.stream_type) > ($3::uuid, $4::text)
ORDER BY s.account_id, s.stream_type
LIMIT $5
"""
_LOCK_PAIRS = """
SELECT c.account_id, c.stream_type, c.position
FROM unnest($2::uuid[], $3::text[]) AS w(account_id, stream_type)
JOIN projection_checkpoints c
  ON c.projection = $1 AND c.account_id = w.account_id AND c.stream_type = w.stream_type
FOR UPDATE OF c
"""
# A replay is not part of the commands' traces: their trace contexts are not read.
_READ = """
SELECT e.account_id, e.stream_id, e.stream_type, e.stream_revision, e.sequence_number,
       e.payload_item_name, e.payload, e.schema_version, e.commit_time, e.command_id,
       '{}'::jsonb AS trace_context
FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::integer[]) AS c(account_id, stream_type, position, n)
CROSS JOIN LATERAL (
    SELECT * FROM events e
    WHERE e.account_id = c.account_id AND e.stream_type = c.stream_type
      AND e.sequence_number > c.position
    ORDER BY e.sequence_number
    LIMIT c.n
) e
"""
_START_CHECKPOINTS = """
INSERT INTO projection_checkpoints (projection, account_id, stream_type, position)
SELECT $1, s.account_id, s.stream_type, 0 FROM stream_sequences s WHERE s.stream_type = ANY($2::text[])
ON CONFLICT DO NOTHING
"""
_BEHIND_LIVE = """
SELECT count(*) FROM projection_checkpoints l
JOIN projection_checkpoints s
  ON s.projection = $2 AND s.account_id = l.account_id AND s.stream_type = l.stream_type
WHERE l.projection = $1 AND l.position > s.position
"""
_START_LIKE_LIVE = """
INSERT INTO projection_checkpoints (projection, account_id, stream_type, position)
SELECT $2, l.account_id, l.stream_type, 0 FROM projection_checkpoints l WHERE l.projection = $1
ON CONFLICT DO NOTHING
"""
_STATE = "SELECT state FROM projection_versions WHERE projection = $1 AND version = $2 FOR UPDATE"
_SHAPE = "SELECT shape FROM projection_versions WHERE projection = $1 AND version = $2"
_FORGET_CHECKPOINTS = "DELETE FROM projection_checkpoints WHERE projection = $1"
_FORGET_PARKED = "DELETE FROM parked_events WHERE projection = $1"
_RENAME_CHECKPOINTS = "UPDATE projection_checkpoints SET projection = $2 WHERE projection = $1"
_RENAME_PARKED = "UPDATE parked_events SET projection = $2 WHERE projection = $1"
_FORGET_FAN_OUTS = "DELETE FROM fan_out_jobs WHERE projection = $1"
_RENAME_FAN_OUTS = "UPDATE fan_out_jobs SET projection = $2 WHERE projection = $1"
# The functions of a version's triggers (named with its suffix: the live version's are not).
_FUNCTIONS = """
SELECT DISTINCT p.oid::regprocedure::text AS name
FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
WHERE t.tgrelid IN (SELECT to_regclass(n) FROM unnest($1::text[]) AS n) AND NOT t.tgisinternal
  AND right(p.proname, length($2)) = $2
"""
_INDEXES = "SELECT indexrelid::regclass::text AS name FROM pg_index WHERE indrelid = $1::regclass"
_POLICIES = "SELECT polname AS name FROM pg_policy WHERE polrelid = $1::regclass"
_TRIGGERS = "SELECT tgname AS name FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal"


class SwitchTimedOut(RuntimeError):
    """The new version did not catch up with the live one within the time the live projector may be
    held; the switch changed nothing (its activity is retried)."""


class BuildRaced(RuntimeError):
    """A chunk's checkpoints moved between its read and its write: another attempt of the build runs
    (its activity is retried, and goes on from where they are)."""


class ShapeChanged(RuntimeError):
    """The version was started under another model: it cannot go on (abort it, build again)."""


class NotBuilt(RuntimeError):
    """The version is not being built (switched in already, or aborted)."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the bulk pass is: every (account, stream type) up to this one is replayed."""

    account_id: UUID
    stream_type: str


START = Cursor(UUID(int=0), "")


class _Sealed(Exception):
    """A chunk's rows have personal data sealed: its keys are needed to fold it."""


@dataclass(frozen=True, slots=True)
class _Planned:
    """A chunk read ahead: its pairs' positions, their next events, where the pass goes on after it,
    and the positions it leaves its pairs at."""

    positions: list[Position]
    rows: list[asyncpg.Record]
    folded: list[Stored] | None
    """Its events as the fold takes them (None: an upcaster failed on one; the chunk goes event
    by event)."""
    cursor: Cursor
    ahead: dict[Pair, int]
    read_seconds: float
    keys: Keys
    """The subjects' keys its sealed events open with."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """What one chunk of the bulk pass did, and where the pass goes on."""

    events: int
    rows: int
    seconds: float
    cursor: Cursor
    bulk: bool
    """Folded; False when it went event by event (an event refused, or held behind one)."""


class Build:
    """One version of one projection in one tenant database, and the steps that build it."""

    def __init__(self, pool: asyncpg.Pool[Any], live: ModelProjection, feed: EventFeed, version: int) -> None:
        self.pool = pool
        self.live = live
        self.version = version
        self.shadow = live.versioned(version)
        self.feed = feed
        self.projector = Projector(pool, self.shadow, feed, None)
        """Its batches (no notifications: no one reads this version until it is switched in)."""
        self.chunk = FIRST_CHUNK
        """Events the next chunk reads at most: it adapts towards CHUNK_SECONDS, up to `max_chunk`."""
        self.max_chunk = MAX_CHUNK

    @classmethod
    async def prepare(cls, pool: asyncpg.Pool[Any], live: ModelProjection, feed: EventFeed) -> Build:
        """A new version, being built, with its tables and its checkpoints at 0. The version being
        built already goes on, if it has today's shape; one of another shape is aborted first."""
        async with pool.acquire() as connection:
            running = await versions.building(connection, live.name)
            if running is not None and running.shape != live.shape:
                await cls(pool, live, feed, running.version).abort()
                running = None
            version = running.version if running else await versions.begin(connection, live.name, live.shape)
            build = cls(pool, live, feed, version)
            async with connection.transaction():
                if running is None:  # a new version: nothing of an aborted one of that number stays
                    await drop_tables(connection, build.shadow)
                await connection.execute(build.shadow.ddl())
            await connection.execute(_START_CHECKPOINTS, build.shadow.name, list(live.stream_types))
        return build

    async def events(self) -> tuple[int, int]:
        """Events it has replayed (its checkpoints, as committed) and has to replay (the store's
        head), over every account: a look at every checkpoint, once per attempt."""
        lag = await self.projector.lag()
        return lag.position, lag.head

    async def bulk_pass(self, cursor: Cursor = START, done: Callable[[Chunk], None] | None = None) -> Cursor:
        """Replay every account from `cursor` on, a chunk at a time, each in its own transaction;
        `done` hears each chunk. Returns the cursor past the last account.

        The next chunk's events are read (and upcast) while this one is folded and written: the
        database reads while Python folds. Its transaction then checks that its checkpoints are
        where the read began (a stray attempt of the same build would have moved them)."""
        # Each chunk makes a few objects per event and frees them at its end: automatic collections
        # would walk them again and again (they took more time than the chunks' own work). A
        # collection of the young generations every COLLECT_EVERY chunks finds what cycles were
        # made (each walks the chunk read ahead, alive meanwhile: after every chunk, they took a
        # seventh of the pass).
        with collections_paused():
            reading = asyncio.ensure_future(self._read_ahead(cursor, {}))
            try:
                written = 0
                while (planned := await reading) is not None:
                    reading = asyncio.ensure_future(self._read_ahead(planned.cursor, planned.ahead))
                    chunk = await self._write(planned)
                    cursor = planned.cursor
                    del planned
                    written += 1
                    if written % COLLECT_EVERY == 0:
                        collect_young()
                    self._adapt(chunk.events, chunk.seconds)
                    if done is not None:
                        done(chunk)
                return cursor
            finally:
                reading.cancel()

    def _adapt(self, events: int, seconds: float) -> None:
        if events >= self.chunk // 2 and seconds < CHUNK_SECONDS / 2:
            self.chunk = min(self.max_chunk, self.chunk * 2)
        elif seconds > CHUNK_SECONDS * 2:
            self.chunk = max(min(FIRST_CHUNK // 5, self.max_chunk), self.chunk // 2)

    async def _read_ahead(self, cursor: Cursor, ahead: dict[Pair, int]) -> _Planned | None:
        """The next chunk after `cursor`, read: its pairs (positions as the chunk before leaves them,
        `ahead`), their events, and where the pass goes on after it. None when no pair lags."""
        started = time.monotonic()
        async with self.pool.acquire() as connection:
            while True:
                pairs = await connection.fetch(
                    _NEXT_PAIRS,
                    self.shadow.name,
                    list(self.live.stream_types),
                    cursor.account_id,
                    cursor.stream_type,
                    PAIRS_PER_LOOK,
                )
                if not pairs:
                    return None
                heads = {(p["account_id"], p["stream_type"]): p["last_sequence"] for p in pairs}
                at = {
                    key: max(p["position"], ahead.get(key, 0))
                    for p in pairs
                    for key in [(p["account_id"], p["stream_type"])]
                }
                lagging = _plan(heads, at, self.chunk)
                if lagging:
                    break
                cursor = Cursor(*list(heads)[-1])
            keys = list(lagging)
            rows = await connection.fetch(
                _READ,
                [a for a, _ in keys],
                [t for _, t in keys],
                [at[k] for k in keys],
                [lagging[k] for k in keys],
            )
        try:
            opening, folded = NO_KEYS, self._upcast(rows, None)
            if folded is None:  # event by event then: with the keys its sealed rows need, if any
                raise _Sealed
        except _Sealed:  # personal data to open: the keys, then again (no pass of its own otherwise)
            async with self.pool.acquire() as connection:
                opening = await self.feed.keys_for(connection, rows)
            folded = self._upcast(rows, opening)
        read: dict[Pair, int] = {}
        last: dict[Pair, int] = {}
        for row in rows:
            key = (row["account_id"], row["stream_type"])
            read[key] = read.get(key, 0) + 1
            last[key] = row["sequence_number"]
        # The pass goes on after the pairs this chunk finishes, up to the first it does not.
        after = cursor
        for key, head in heads.items():
            finished = read.get(key, 0) < lagging[key] if key in lagging else head <= at[key]
            if not finished:
                break
            after = Cursor(*key)
        return _Planned(
            [Position(a, t, at[(a, t)]) for a, t in keys],
            rows,
            folded,
            after,
            {k: last.get(k, at[k]) for k in keys},
            time.monotonic() - started,
            opening,
        )

    async def _write(self, planned: _Planned) -> Chunk:
        """One chunk, in one transaction: lock its pairs' checkpoints (still where its read began),
        apply its events folded (or one by one, parking what is refused), and move the checkpoints."""
        started = time.monotonic()
        positions = planned.positions
        async with self.pool.acquire() as connection, connection.transaction():
            locked = await connection.fetch(
                _LOCK_PAIRS,
                self.shadow.name,
                [p.account_id for p in positions],
                [p.stream_type for p in positions],
            )
            if {(r["account_id"], r["stream_type"], r["position"]) for r in locked} != {
                (p.account_id, p.stream_type, p.position) for p in positions
            }:
                raise BuildRaced(f"another attempt is building version {self.version} of {self.live.name}")
            written, bulk = await self._apply(connection, planned)
        seconds = planned.read_seconds + time.monotonic() - started
        return Chunk(len(planned.rows), written, seconds, planned.cursor, bulk)

    def _upcast(self, rows: list[asyncpg.Record], keys: Keys | None) -> list[Stored] | None:
        """The stored rows as the fold takes them, opened and in today's shapes (None if an upcaster
        fails); _Sealed, without `keys`, at the first that has personal data sealed."""
        upcast = self.feed.upcasters.upcast
        payload_of = self.feed.payload
        folded: list[Stored] = []
        for row in rows:
            payload = row["payload"]
            try:
                if SEALED in payload:
                    if keys is None:
                        raise _Sealed
                    payload = payload_of(row, keys)
                shapes = upcast(row["payload_item_name"], row["schema_version"], payload)
            except _Sealed:
                raise
            except Exception:  # the chunk goes event by event, where the projector parks it
                return None
            account_id, stream_id = row["account_id"], row["stream_id"]
            stream_type, commit_time = row["stream_type"], row["commit_time"]
            for name, payload in shapes:
                folded.append((account_id, stream_id, stream_type, name, payload, commit_time))
        return folded

    async def _apply(self, connection: asyncpg.Connection[Any], planned: _Planned) -> tuple[int, bool]:
        """Folded if it can be (in a savepoint), else decoded and applied event by event as the
        projector does, parking what is refused. (rows written or events applied, folded)"""
        if not planned.rows:
            return 0, True
        positions = planned.positions
        if planned.folded is not None and not await held_streams(connection, self.shadow.name, positions):
            try:
                async with connection.transaction():
                    written = await self.shadow.apply_bulk(connection, planned.folded)
                    last: dict[Pair, int] = {}
                    for row in planned.rows:
                        last[(row["account_id"], row["stream_type"])] = row["sequence_number"]
                    await self.projector.checkpoints.save(connection, last)
                return written, True
            except (CannotFold, *REDO_ONE_BY_ONE):
                pass
        events = self.feed.decode_all(planned.rows, planned.keys, lenient=True)
        await self.projector.apply_read(connection, positions, events, [], [], True, live=False)
        return len(events), False

    async def analyze(self) -> None:
        """VACUUM (ANALYZE) the version's tables, as autovacuum would in time: statistics for the
        planner and a visibility map for index-only scans before queries read them."""
        async with self.pool.acquire() as connection:
            for table in self.shadow.tables:
                await connection.execute(f"VACUUM (ANALYZE) {table}")

    async def catch_up(self, beat: Callable[[], None] = lambda: None) -> int:
        """The projector's batches until the version is at the head it finds; how many events."""
        applied = 0
        while advanced := await self.projector.run_batch():
            applied += len(advanced)
            beat()
        return applied

    async def check_shape(self) -> None:
        """ShapeChanged if the version was started under another model than this process's (a
        release deployed in the middle of the build): it must be built again."""
        async with self.pool.acquire() as connection:
            recorded = await connection.fetchval(_SHAPE, self.live.name, self.version)
        if recorded is not None and recorded != self.live.shape:
            raise ShapeChanged(
                f"version {self.version} of {self.live.name} was started under another model than this "
                "one: abort it and build again"
            )

    async def switch(
        self,
        *,
        within: float = 30.0,
        notifier: Notifier | None = None,
        beat: Callable[[], None] = lambda: None,
    ) -> int:
        """Switch queries to this version, for every account at once; returns the version retired.

        Alone holding the projection's writer lock (live batches wait for it), the version catches
        up with every live checkpoint, then takes the live tables' names, checkpoints and parked
        events, in the same transaction. SwitchTimedOut, changing nothing, if it is still behind
        after `within` seconds; a lock not had within 2 s is a LockNotAvailableError (its waiting
        holds up the live batches and readers queued behind it: better to try again later). Run
        again once it committed, it answers as the first time did. Catch it up first (`catch_up`),
        so that little is left to do while the live projector waits.
        """
        live, shadow = self.live, self.shadow
        advanced: dict[tuple[UUID, str], ProjectionAdvanced] = {}
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute("SET LOCAL lock_timeout = '2s'")
            state = await connection.fetchval(_STATE, live.name, self.version)
            if state == versions.State.LIVE:  # a retry after it committed
                replaced = await versions.replaced_by(connection, live.name, self.version)
                return replaced if replaced is not None else self.version - 1
            if state != versions.State.BUILDING:
                raise NotBuilt(f"version {self.version} of {live.name} is not being built ({state})")
            await self.check_shape()
            await Checkpoints(live.name, live.stream_types).hold_writers(connection, alone=True)
            # A pair the live projector has just begun (its checkpoint at 0) needs one here too.
            await connection.execute(_START_LIKE_LIVE, live.name, shadow.name)
            deadline = time.monotonic() + within
            while await connection.fetchval(_BEHIND_LIVE, live.name, shadow.name):
                if time.monotonic() > deadline:
                    raise SwitchTimedOut(f"version {self.version} of {live.name} is still behind the live")
                moved = await self.projector.run_batch()
                advanced.update(((a.account_id, a.stream_type), a) for a in moved)
                if not moved:
                    await asyncio.sleep(0.01)
                beat()
            current = await versions.live(connection, live.name)
            old = current.version if current else self.version - 1
            retired = live.versioned(old)
            for table, was in zip(live.tables, retired.tables, strict=True):
                await _rename(connection, table, was)
                for trigger in await connection.fetch(_TRIGGERS, was):
                    await connection.execute(f'DROP TRIGGER "{trigger["name"]}" ON {was}')
            functions = await connection.fetch(_FUNCTIONS, shadow.tables, shadow.suffix)
            for table, becomes in zip(shadow.tables, live.tables, strict=True):
                await _rename(connection, table, becomes)
            for function in functions:  # and their triggers: the live ones replace them
                await connection.execute(f"DROP FUNCTION {function['name']} CASCADE")
            for forget, rename in (
                (_FORGET_CHECKPOINTS, _RENAME_CHECKPOINTS),
                (_FORGET_PARKED, _RENAME_PARKED),
                (_FORGET_FAN_OUTS, _RENAME_FAN_OUTS),  # what its fan-outs have left, the live one's gone
            ):
                await connection.execute(forget, live.name)
                await connection.execute(rename, shadow.name, live.name)
            await versions.promote(connection, live.name, self.version)
        if advanced and notifier is not None:
            # What the catch-up under the lock applied past the live positions, told as the live
            # projector would have.
            await notifier.publish(
                [
                    ProjectionAdvanced(live.name, a.account_id, a.stream_type, a.position)
                    for a in advanced.values()
                ],
                [],
            )
        return old

    async def abort(self) -> None:
        """Drop this version (being built) and everything of it: nothing else changes. NotBuilt if it
        was switched in."""
        async with self.pool.acquire() as connection, connection.transaction():
            state = await connection.fetchval(_STATE, self.live.name, self.version)
            if state == versions.State.LIVE:
                raise NotBuilt(f"version {self.version} of {self.live.name} is live: it cannot be aborted")
            await drop_tables(connection, self.shadow)
            await versions.forget(connection, self.live.name, self.version)


async def drop_tables(connection: asyncpg.Connection[Any], version: ModelProjection) -> None:
    """Drop a version's tables, the functions of its triggers, its checkpoints and parked events."""
    functions = await connection.fetch(_FUNCTIONS, version.tables, version.suffix)
    for table in version.tables:
        await connection.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    for function in functions:
        await connection.execute(f"DROP FUNCTION IF EXISTS {function['name']} CASCADE")
    await connection.execute(_FORGET_CHECKPOINTS, version.name)
    await connection.execute(_FORGET_PARKED, version.name)
    await connection.execute(_FORGET_FAN_OUTS, version.name)


async def drop_retired(pool: asyncpg.Pool[Any], live: ModelProjection, version: int) -> None:
    """Drop a retired version (after its grace period)."""
    retired = live.versioned(version)
    async with pool.acquire() as connection, connection.transaction():
        state = await connection.fetchval(_STATE, live.name, version)
        if state == versions.State.LIVE:
            raise NotBuilt(f"version {version} of {live.name} is live: it is not dropped")
        await drop_tables(connection, retired)
        await versions.forget(connection, live.name, version)


def _plan(heads: dict[Pair, int], at: dict[Pair, int], budget: int) -> dict[Pair, int]:
    """The lagging pairs a chunk takes, in order, each with its share of `budget` (its lag, while the
    budget lasts)."""
    lagging: dict[Pair, int] = {}
    left = budget
    for key, head in heads.items():
        behind = head - at[key]
        if behind <= 0:
            continue
        share = min(behind, left)
        lagging[key] = share
        left -= share
        if left <= 0:
            break
    return lagging


async def _rename(connection: asyncpg.Connection[Any], table: str, to: str) -> None:
    """Rename a table and, with it, its indexes, policies and triggers named after it."""
    await connection.execute(f"ALTER TABLE {table} RENAME TO {to}")
    for index in await connection.fetch(_INDEXES, to):
        name = index["name"]
        if name.startswith(table):
            await connection.execute(f"ALTER INDEX {name} RENAME TO {to}{name[len(table) :]}")
    for policy in await connection.fetch(_POLICIES, to):
        name = policy["name"]
        if name.startswith(table):
            await connection.execute(f'ALTER POLICY "{name}" ON {to} RENAME TO "{to}{name[len(table) :]}"')
    for trigger in await connection.fetch(_TRIGGERS, to):
        name = trigger["name"]
        if name.startswith(table):
            await connection.execute(f'ALTER TRIGGER "{name}" ON {to} RENAME TO "{to}{name[len(table) :]}"')
