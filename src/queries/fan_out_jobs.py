"""Fan-out jobs: the copies a change of their source left to refresh, one row per (copy, source row).

A change of a copied attribute's source in another read model (a customer renamed, whose million
orders show its name) is not applied in the transaction that projects it: that transaction records
a job (`record`), and the target read model's fan-out (`queries.projector.fan_out`) refreshes its
rows in chunks. A job carries the position of the earliest event it has to show, per stream type:
until it is done, a consistency wait on the read model is not past it (`queries.waiter`). A second
change of the same source before the job is done starts it over, keeping the earlier position.

A job is recorded for the live read model and for every version of it being built, whose rows read
the same live source (`queries.blue_green` renames the version's jobs with it when it goes live).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

import asyncpg

CHANNEL = "erp_fan_outs"
"""Where a transaction that records jobs tells the fan-outs (NOTIFY, with the read model's name)."""

_RECORD = """
WITH targets AS (
    SELECT $1::text AS projection
    UNION ALL
    SELECT projection || '@v' || version FROM projection_versions WHERE projection = $1 AND state = 'building'
), recorded AS (
    INSERT INTO fan_out_jobs AS j (projection, copy, account_id, source_id, stream_type, position)
    SELECT t.projection, $2, k.account_id, k.source_id, k.stream_type, k.position
    FROM targets t
    CROSS JOIN unnest($3::uuid[], $4::uuid[], $5::text[], $6::bigint[])
        AS k(account_id, source_id, stream_type, position)
    ON CONFLICT (projection, copy, account_id, source_id, stream_type) DO UPDATE
    SET position = least(j.position, excluded.position), cursor_at = NULL, cursor_id = NULL,
        rows = 0, updated_at = now()
    RETURNING 1
)
SELECT pg_notify($7, $1) FROM (SELECT count(*) FROM recorded) done
"""

Key = tuple[UUID, UUID, str]
"""(AccountId, the source row's id, the stream type of the event that changed it)."""


async def record(
    connection: asyncpg.Connection[Any], projection: str, copy: str, changes: Iterable[tuple[Key, int]]
) -> None:
    """Jobs to refresh `copy` (of read model `projection`) on the rows that refer to each changed
    source row, each with the position of the event that changed it (the earliest one kept)."""
    earliest: dict[Key, int] = {}
    for key, position in changes:
        earliest[key] = min(earliest.get(key, position), position)
    if not earliest:
        return
    keys = list(earliest)
    await connection.execute(
        _RECORD,
        projection,
        copy,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        list(earliest.values()),
        CHANNEL,
    )


async def forget(connection: asyncpg.Connection[Any], projection: str, account_id: UUID | None) -> None:
    """Drop a read model's jobs (of one account, or all): it is rebuilt, and reads its sources anew."""
    await connection.execute(
        "DELETE FROM fan_out_jobs WHERE projection = $1 AND ($2::uuid IS NULL OR account_id = $2)",
        projection,
        account_id,
    )


_POSITIONS = """
SELECT false AS job, c.stream_type, c.position
FROM unnest($2::text[], $3::text[]) AS w(projection, stream_type)
JOIN projection_checkpoints c
  ON c.projection = w.projection AND c.account_id = $1 AND c.stream_type = w.stream_type
UNION ALL
SELECT true, t.stream_type, j.position - 1
FROM unnest($4::text[]) AS p(projection)
CROSS JOIN unnest($3::text[]) AS t(stream_type)
CROSS JOIN LATERAL (
    SELECT position FROM fan_out_jobs
    WHERE projection = p.projection AND account_id = $1 AND stream_type = t.stream_type
    ORDER BY position LIMIT 1
) j
"""
"""Each wanted checkpoint, and each read model's earliest pending job per stream type: an index
lookup each, however many jobs an account has pending."""


async def positions(
    connection: asyncpg.Connection[Any] | asyncpg.Pool[Any],
    owners: dict[str, str],
    fan_outs: Iterable[str],
    account_id: UUID,
    types: Iterable[str],
) -> dict[str, int]:
    """How far a read model shows each of `types` for an account: the checkpoint of the read model
    that projects it (`owners`), short of the earliest position a fan-out into it (or into what it
    reads) has still to show. One statement, so one snapshot: a job is recorded in the transaction
    that moves its source's checkpoint, and deleted in the one that finishes it."""
    wanted = [t for t in types if t in owners]
    rows = await connection.fetch(_POSITIONS, account_id, [owners[t] for t in wanted], wanted, list(fan_outs))
    reached = dict.fromkeys(wanted, 0)
    for r in rows:
        if not r["job"]:
            reached[r["stream_type"]] = r["position"]
    for r in rows:
        if r["job"]:
            reached[r["stream_type"]] = min(reached[r["stream_type"]], r["position"])
    return reached
