"""Chained read models: fed by the changes another read model makes, not by events (the seed's
"chaining", slide 58).

The read model it is fed by (`fed_by`) records, in the transaction that projects them, which of the
element's rows its events changed (`record_changes`): a queue of changed rows in
`read_model_changes`, one row per changed row, with the writing transaction's id. The chained read
model takes an account's queued rows (`ChainedProjection.take`: deleted from the queue in its
transaction; one the feeder is writing now is skipped, and comes back committed), reads those rows
as they are now, and moves each group's totals by the difference from what it last took from each
row (its members table). Taking a row twice changes nothing, so the totals are exact whatever order
or number of times the changes come in, and a rebuild from the feeder's rows equals them (`rebuild`).
Rows the feeder writes again for any reason (a parked event released, a one-account rebuild, the
chained read model made for the first time: `ensure`) are queued again and taken.

Its checkpoint per (account, stream type) says how far the feeder's checkpoint it shows: once no
change of the account is left queued, the feeder's checkpoint as read in the same snapshot (a change
commits with the checkpoint that covers it).

Work is found without looking at idle accounts: the changes queued since a follower's last look
are those whose transaction its snapshot could not see (`changed >= horizon`, as the projector finds
its own: `queries/projector/checkpoints.sql`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from commands.model import Element, Model, Type, snake
from commands.model.read_models import Chained
from queries.model_tables import column_name, table_name, tenant_policy
from queries.notifications import Notifier, ProjectionAdvanced
from queries.shown import Scope

ROWS_PER_TAKE = 1_000
"""Changed rows one transaction takes at most."""
_START = """
INSERT INTO projection_checkpoints (projection, account_id, stream_type, position)
VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING
"""
_MINE = """
SELECT position FROM projection_checkpoints
WHERE projection = $1 AND account_id = $2 AND stream_type = $3 FOR UPDATE
"""
_FED = """
SELECT position FROM projection_checkpoints WHERE projection = $1 AND account_id = $2 AND stream_type = $3
"""
# Taken changes leave the queue (one the feeder is writing now is skipped: it comes back committed).
_TAKE = """
DELETE FROM read_model_changes c USING (
    SELECT projection, account_id, row_id FROM read_model_changes
    WHERE projection = $1 AND account_id = $2 AND stream_type = $3
    ORDER BY row_id LIMIT $4 FOR UPDATE SKIP LOCKED
) t
WHERE c.projection = t.projection AND c.account_id = t.account_id AND c.row_id = t.row_id
RETURNING c.row_id
"""
_PENDING = """
SELECT EXISTS (SELECT FROM read_model_changes WHERE projection = $1 AND account_id = $2 AND stream_type = $3)
"""
_SAVE = """
UPDATE projection_checkpoints SET position = $4, updated_at = now()
WHERE projection = $1 AND account_id = $2 AND stream_type = $3
"""
CHANNEL = "erp_chained"
"""Where a batch that recorded changes tells the chained read models (NOTIFY, the feeder's name)."""
ACCOUNTS_PER_STEP = 100

_RECORD = """
WITH recorded AS (
    INSERT INTO read_model_changes AS c (projection, account_id, row_id, stream_type, position)
    SELECT $1, * FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::bigint[])
    ON CONFLICT (projection, account_id, row_id) DO UPDATE
    SET position = greatest(c.position, excluded.position), stream_type = excluded.stream_type,
        changed = pg_current_xact_id()
    RETURNING 1
)
SELECT pg_notify($6, $1) FROM (SELECT count(*) FROM recorded) done
"""


async def record_changes(
    connection: asyncpg.Connection[Any], projection: str, changes: dict[tuple[UUID, UUID], tuple[str, int]]
) -> None:
    """Note the rows of `projection` that events changed: (AccountId, row id) -> (stream type, position)."""
    if not changes:
        return
    keys = list(changes)
    await connection.execute(
        _RECORD,
        projection,
        [a for a, _ in keys],
        [i for _, i in keys],
        [changes[k][0] for k in keys],
        [changes[k][1] for k in keys],
        CHANNEL,
    )


class ChainedProjection:
    """One chained read model: groups of a feeding read model's rows, with their count and totals."""

    def __init__(self, model: Model, declared: Chained) -> None:
        self.declared = declared
        self.name = declared.name
        self.fed_by = declared.fed_by
        self.element: Element = model.elements[declared.element]
        self.stream_type = self.element.stream_type
        self.stream_types = (self.stream_type,)
        self.source = table_name(self.element)
        self.group = column_name(self.element.attribute(declared.group_by))
        self.sums = [column_name(self.element.attribute(n)) for n in declared.sums]
        self.money = [self.element.attribute(n).type is Type.MONEY for n in declared.sums]
        self.table = f"rm_{snake(declared.name)}"
        self.members = f"{self.table}_members"
        self.scope = Scope({self.stream_type: self.name}, (self.name,))
        """A wait on it looks at its own checkpoints: it has no fan-outs."""

    async def ensure(self, connection: asyncpg.Connection[Any]) -> None:
        """Its tables (idempotent). Made now for the first time, it starts from every row the feeder
        has: each waits in the queue to be taken, as a change would."""
        new = await connection.fetchval("SELECT to_regclass($1) IS NULL", self.table)
        await connection.execute(self.ddl())
        if new:
            await connection.execute(
                "INSERT INTO read_model_changes (projection, account_id, row_id, stream_type, position) "
                f"SELECT $1, account_id, id, $2, 0 FROM {self.source} ON CONFLICT DO NOTHING",
                self.fed_by,
                self.stream_type,
            )

    def ddl(self) -> str:
        """Its tables (the groups, and what each member row last gave them) under the tenants' policy."""
        sums = "".join(f", {c} numeric NOT NULL DEFAULT 0" for c in self.sums)
        statements = [
            f"CREATE TABLE IF NOT EXISTS {self.table} (account_id uuid NOT NULL, id uuid NOT NULL, "
            f"rows bigint NOT NULL{sums}, updated_at timestamptz NOT NULL DEFAULT now(), "
            f"CONSTRAINT {self.table}_pkey PRIMARY KEY (account_id, id))",
            f"CREATE TABLE IF NOT EXISTS {self.members} (account_id uuid NOT NULL, id uuid NOT NULL, "
            f"group_id uuid NOT NULL{sums}, CONSTRAINT {self.members}_pkey PRIMARY KEY (account_id, id))",
        ]
        for table in (self.table, self.members):
            statements += tenant_policy(table)
        return ";\n".join(statements) + ";"

    async def take(
        self, connection: asyncpg.Connection[Any], account_id: UUID, limit: int = ROWS_PER_TAKE
    ) -> tuple[ProjectionAdvanced | None, bool]:
        """Up to `limit` of an account's pending changes, taken (in the caller's transaction): what
        advanced (the checkpoint, once none is left pending), and whether some are left."""
        await connection.execute(_START, self.name, account_id, self.stream_type)
        mine = await connection.fetchval(_MINE, self.name, account_id, self.stream_type)
        fed = await connection.fetchval(_FED, self.fed_by, account_id, self.stream_type) or 0
        rows = await connection.fetch(_TAKE, self.fed_by, account_id, self.stream_type, limit)
        await self._apply(connection, account_id, [r["row_id"] for r in rows])
        if len(rows) == limit and await connection.fetchval(
            _PENDING, self.fed_by, account_id, self.stream_type
        ):
            return None, True
        if fed <= mine:
            return None, False
        await connection.execute(_SAVE, self.name, account_id, self.stream_type, fed)
        return ProjectionAdvanced(self.name, account_id, self.stream_type, fed), False

    async def _apply(self, connection: asyncpg.Connection[Any], account_id: UUID, ids: list[UUID]) -> None:
        """Move each group by what the rows give it now less what they gave it last."""
        if not ids:
            return
        sums = ", ".join(self.sums)
        given = await connection.fetch(
            f"SELECT id, group_id, {sums} FROM {self.members} "
            "WHERE account_id = $1 AND id = ANY($2) FOR UPDATE",
            account_id,
            ids,
        )
        now = await connection.fetch(
            f"SELECT id, {self.group} AS group_id, "
            + ", ".join(f"coalesce({c}, 0) AS {c}" for c in self.sums)
            + f" FROM {self.source} WHERE account_id = $1 AND id = ANY($2) AND {self.group} IS NOT NULL",
            account_id,
            ids,
        )
        moves: dict[UUID, list[Any]] = defaultdict(lambda: [0, *(Decimal(0) for _ in self.sums)])
        for row, sign in [*((r, -1) for r in given), *((r, 1) for r in now)]:
            move = moves[row["group_id"]]
            move[0] += sign
            for i, column in enumerate(self.sums, 1):
                move[i] += sign * row[column]
        changed = {g: m for g, m in moves.items() if any(m)}
        if changed:
            groups = list(changed)
            columns = ", ".join(["rows", *self.sums])
            arrays = ", ".join(
                f"${i + 3}::{'numeric' if i else 'bigint'}[]" for i in range(len(self.sums) + 1)
            )
            assign = ", ".join(f"{c} = g.{c} + excluded.{c}" for c in ["rows", *self.sums])
            await connection.execute(
                f"INSERT INTO {self.table} AS g (account_id, id, {columns}) "
                f"SELECT $1, * FROM unnest($2::uuid[], {arrays}) "
                f"ON CONFLICT (account_id, id) DO UPDATE SET {assign}, updated_at = now()",
                account_id,
                groups,
                *([changed[g][i] for g in groups] for i in range(len(self.sums) + 1)),
            )
            await connection.execute(
                f"DELETE FROM {self.table} WHERE account_id = $1 AND rows = 0", account_id
            )
        await connection.execute(
            f"DELETE FROM {self.members} WHERE account_id = $1 AND id = ANY($2)", account_id, ids
        )
        if now:
            await connection.executemany(
                f"INSERT INTO {self.members} (account_id, id, group_id, {sums}) "
                f"VALUES ($1, $2, $3, {', '.join(f'${i + 4}' for i in range(len(self.sums)))})",
                [(account_id, r["id"], r["group_id"], *(r[c] for c in self.sums)) for r in now],
            )

    async def rebuild(self, pool: asyncpg.Pool[Any], account_id: UUID) -> None:
        """One account's groups computed anew from the feeding read model's rows, in one transaction,
        its checkpoint set to the feeder's: what the changes, taken one by one, add up to."""
        sums = ", ".join(self.sums)
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "INSERT INTO projection_checkpoints (projection, account_id, stream_type, position) "
                "VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING",
                self.name,
                account_id,
                self.stream_type,
            )
            await connection.execute(
                "SELECT 1 FROM projection_checkpoints WHERE projection = $1 AND account_id = $2 FOR UPDATE",
                self.name,
                account_id,
            )
            fed = await connection.fetchval(
                "SELECT position FROM projection_checkpoints WHERE projection = $1 AND account_id = $2 "
                "AND stream_type = $3 FOR SHARE",
                self.fed_by,
                account_id,
                self.stream_type,
            )
            for table in (self.table, self.members):
                await connection.execute(f"DELETE FROM {table} WHERE account_id = $1", account_id)
            coalesced = ", ".join(f"coalesce({c}, 0)" for c in self.sums)
            await connection.execute(
                f"INSERT INTO {self.members} (account_id, id, group_id, {sums}) "
                f"SELECT account_id, id, {self.group}, {coalesced} FROM {self.source} "
                f"WHERE account_id = $1 AND {self.group} IS NOT NULL",
                account_id,
            )
            totals = ", ".join(f"sum({c})" for c in self.sums)
            await connection.execute(
                f"INSERT INTO {self.table} (account_id, id, rows, {sums}) "
                f"SELECT account_id, group_id, count(*), {totals} FROM {self.members} "
                "WHERE account_id = $1 GROUP BY account_id, group_id",
                account_id,
            )
            await connection.execute(
                "UPDATE projection_checkpoints SET position = $4, updated_at = now() "
                "WHERE projection = $1 AND account_id = $2 AND stream_type = $3",
                self.name,
                account_id,
                self.stream_type,
                fed or 0,
            )


class ChainedFollower:
    """Keeps one chained read model current in one database: which accounts have changes, and the
    steps that take them (its state is the database's own: one per database and process)."""

    def __init__(
        self, projection: ChainedProjection, pool: asyncpg.Pool[Any], notifier: Notifier | None = None
    ) -> None:
        self.projection = projection
        self.pool = pool
        self.notifier = notifier
        self._horizon = 0
        self._work: dict[UUID, None] = {}
        """Accounts with changes not taken yet, oldest first."""

    async def find_work(self, connection: asyncpg.Connection[Any]) -> None:
        """Add the accounts with changes recorded since the last look to the work (the first look:
        every account with any pending): what the queue holds, not every account."""
        row = await connection.fetchrow(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon, "
            "coalesce(array_agg(DISTINCT account_id), '{}') AS accounts FROM read_model_changes "
            f"WHERE projection = $1 AND changed >= '{int(self._horizon)}'::xid8",
            self.projection.fed_by,
        )
        assert row is not None
        self._horizon = int(row["horizon"])
        self._work.update(dict.fromkeys(row["accounts"]))

    async def step(self, accounts: list[UUID] | None = None) -> list[ProjectionAdvanced]:
        """Take the changes of the accounts with new ones (or of `accounts`), each in a transaction of
        its own; what advanced, announced."""
        advanced: list[ProjectionAdvanced] = []
        async with self.pool.acquire() as connection:
            if accounts is None:
                await self.find_work(connection)
                accounts = list(self._work)[:ACCOUNTS_PER_STEP]
            for account_id in accounts:
                async with connection.transaction():
                    moved, more = await self.projection.take(connection, account_id)
                self._work.pop(account_id, None)
                if more:
                    self._work[account_id] = None  # the rest at its next turn
                if moved is not None:
                    advanced.append(moved)
        if advanced and self.notifier is not None:
            await self.notifier.publish(advanced)
        return advanced

    async def run(
        self,
        wake: asyncio.Event,
        stop: asyncio.Event | None,
        poll_interval: float = 1.0,
    ) -> None:
        """Take changes until `stop` is set: all there are, then sleep until woken (or polled)."""
        while stop is None or not stop.is_set():
            wake.clear()
            worked = True
            while worked:
                worked = bool(await self.step()) or bool(self._work)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=poll_interval)
