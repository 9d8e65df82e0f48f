"""Each projection's versions, per tenant database: the live one, one being built, retired ones.

The live version's tables are `rm_<element>` and its checkpoints go by the projection's name. A
version built beside it (`queries.blue_green`) has tables `rm_<element>__v<N>` and checkpoints
`<name>@v<N>` until it is switched in; the version it replaced is then retired, under
`rm_<element>__v<old>`, until dropped after a grace period. Aborted and dropped versions stay
recorded, so a number is never used twice. `shape` fingerprints what a version's
rows hold (`ModelProjection.shape`): a release whose model changes it wants a new version built.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg

from queries.model_projection import ModelProjection


class State(StrEnum):
    BUILDING = "building"
    LIVE = "live"
    RETIRED = "retired"
    ABORTED = "aborted"
    DROPPED = "dropped"
    """Retired, then its tables dropped."""


@dataclass(frozen=True, slots=True)
class Version:
    projection: str
    version: int
    state: State
    shape: str
    created_at: datetime
    live_at: datetime | None
    retired_at: datetime | None


class BuildRunning(RuntimeError):
    """A projection has at most one version being built at a time."""

    def __init__(self, name: str, version: int) -> None:
        super().__init__(f"version {version} of {name} is being built already")
        self.version = version


class NotBuilding(LookupError):
    """No version of the projection is being built."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no version of {name} is being built")


_ENSURE = """
INSERT INTO projection_versions (projection, version, state, shape, live_at)
SELECT p.name, 1, 'live', p.shape, now() FROM unnest($1::text[], $2::text[]) AS p(name, shape)
WHERE NOT EXISTS (SELECT 1 FROM projection_versions v WHERE v.projection = p.name)
"""
_LIST = """
SELECT projection, version, state, shape, created_at, live_at, retired_at FROM projection_versions
WHERE ($1::text IS NULL OR projection = $1) ORDER BY projection, version
"""
_BEGIN = """
INSERT INTO projection_versions (projection, version, state, shape)
SELECT $1, coalesce(max(version), 0) + 1, 'building', $2 FROM projection_versions WHERE projection = $1
RETURNING version
"""
_PROMOTE = """
UPDATE projection_versions SET
    state = CASE WHEN version = $2 THEN 'live' ELSE 'retired' END,
    live_at = CASE WHEN version = $2 THEN now() ELSE live_at END,
    retired_at = CASE WHEN version = $2 THEN retired_at ELSE now() END
WHERE projection = $1 AND (version = $2 OR state = 'live')
RETURNING version, state
"""


async def ensure_live(connection: asyncpg.Connection[Any], projections: Iterable[ModelProjection]) -> None:
    """Record version 1, live, of each projection that has no version yet (the repeatable migration
    step: the read models as they were become version 1)."""
    found = list(projections)
    await connection.execute(_ENSURE, [p.name for p in found], [p.shape for p in found])


async def new_shapes(
    connection: asyncpg.Connection[Any] | asyncpg.Pool[Any], projections: Iterable[ModelProjection]
) -> list[str]:
    """The projections whose shape, as this process's model gives it, none of their versions has
    had: a release that changed them. (A shape some version had, as an older release's, is not new:
    a worker of that release, not yet replaced, builds nothing.)"""
    known: dict[str, set[str]] = {}
    for v in await versions(connection):
        known.setdefault(v.projection, set()).add(v.shape)
    return [p.name for p in projections if p.name in known and p.shape not in known[p.name]]


async def versions(
    connection: asyncpg.Connection[Any] | asyncpg.Pool[Any], name: str | None = None
) -> list[Version]:
    """Every version of one projection, or of all, oldest first."""
    rows = await connection.fetch(_LIST, name)
    return [
        Version(
            r["projection"],
            r["version"],
            State(r["state"]),
            r["shape"],
            r["created_at"],
            r["live_at"],
            r["retired_at"],
        )
        for r in rows
    ]


async def building(connection: asyncpg.Connection[Any] | asyncpg.Pool[Any], name: str) -> Version | None:
    """The version of `name` being built, if any."""
    return next((v for v in await versions(connection, name) if v.state is State.BUILDING), None)


async def live(connection: asyncpg.Connection[Any] | asyncpg.Pool[Any], name: str) -> Version | None:
    return next((v for v in await versions(connection, name) if v.state is State.LIVE), None)


async def begin(connection: asyncpg.Connection[Any], name: str, shape: str) -> int:
    """Record a new version of `name`, being built; BuildRunning if one is already."""
    try:
        async with connection.transaction():
            version = await connection.fetchval(_BEGIN, name, shape)
    except asyncpg.UniqueViolationError:
        running = await building(connection, name)
        raise BuildRunning(name, running.version if running else 0) from None
    return int(version)


async def promote(connection: asyncpg.Connection[Any], name: str, version: int) -> int | None:
    """In the caller's transaction: `version` becomes live, and the live one retired; which that was."""
    rows = await connection.fetch(_PROMOTE, name, version)
    return next((r["version"] for r in rows if r["state"] == State.RETIRED), None)


async def forget(connection: asyncpg.Connection[Any], name: str, version: int) -> None:
    """The version's tables are gone: an aborted build's, or a retired version's after its grace
    period. Its row stays, so that its number is never used again."""
    await connection.execute(
        "UPDATE projection_versions SET state = CASE state WHEN 'building' THEN 'aborted' ELSE 'dropped' END "
        "WHERE projection = $1 AND version = $2 AND state IN ('building', 'retired')",
        name,
        version,
    )


async def replaced_by(connection: asyncpg.Connection[Any], name: str, version: int) -> int | None:
    """The version that `version` replaced when it was switched in (the latest retired before it)."""
    found: int | None = await connection.fetchval(
        "SELECT max(version) FROM projection_versions WHERE projection = $1 AND version < $2 "
        "AND state IN ('retired', 'dropped') AND retired_at IS NOT NULL",
        name,
        version,
    )
    return found
