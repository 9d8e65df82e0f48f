"""What operators do with projections: see each one's status and lag, rebuild one as a workflow, and
list, retry or skip the events a read model refused (`queries.projector.parking`).

The API (`workflows.http`) and the CLI (`erp projections ...`) both go through here, so a
projection's status is computed in one place.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from uuid import UUID

from temporalio.client import Client, WorkflowHandle

from commands.store.feed import EventFeed
from core.temporal import TemporalGateway
from queries import versions
from queries.model_projection import ModelProjection
from queries.projector import Checkpoints, Lag, parking
from queries.projector.parking import ParkedEvent, Released
from queries.registry import PROJECTIONS
from tenancy.catalog import AccountCatalog
from tenancy.routing import Databases
from workflows.messages import RebuildProgress, RebuildResult
from workflows.starters import (
    BuildRefused,
    BuildSeen,
    TemporalBuilds,
    projector_workflow_id,
    rebuild_progress,
    start_rebuild,
)
from workflows.workflows import RebuildProjectionWorkflow

Rebuild = WorkflowHandle[RebuildProjectionWorkflow, RebuildResult]


class UnknownProjection(LookupError):
    """No projection has that name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"there is no projection named {name!r}; known: {', '.join(PROJECTIONS)}")


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    """One projection in one tenant database (or one account's share of it)."""

    name: str
    database: str
    stream_types: tuple[str, ...]
    pipeline: str
    """The projector workflow's status in Temporal (Running, ...), or Unknown (why)."""
    head: int
    position: int
    parked: int = 0
    """Events the read model refused, waiting for an operator to retry or skip them."""
    held: int = 0
    """Later events of their streams, parked behind them."""
    version: int = 1
    """The live version: the one queries read."""
    shape_changed: bool = False
    """The model gives this read model another shape than the live version's: build a new one."""
    building: Building | None = None
    retired: tuple[int, ...] = ()
    """Versions switched out, kept until their grace period ends."""
    build: BuildSeen | None = None
    """The projection's latest build workflow (None: none ran, or Temporal did not answer)."""

    @property
    def events_behind(self) -> int:
        return self.head - self.position


@dataclass(frozen=True, slots=True)
class Building:
    """A version being built beside the live one, in one database, and how far it is."""

    version: int
    head: int
    position: int


class ProjectionOperations:
    """Status, rebuilds and parked events of every projection in every tenant database."""

    def __init__(
        self,
        databases: Databases,
        catalog: AccountCatalog,
        temporal: TemporalGateway,
        feed: EventFeed,
        *,
        retired_grace: float = 3600.0,
    ) -> None:
        self._databases = databases
        self._catalog = catalog
        self._temporal = temporal
        self._feed = feed
        """How a retry reads the parked events back: upcast as the projectors read them."""
        self.builds = TemporalBuilds(temporal, retired_grace)

    @staticmethod
    def projection(name: str) -> ModelProjection:
        """The projection of that name; UnknownProjection if there is none."""
        try:
            return PROJECTIONS[name]
        except KeyError:
            raise UnknownProjection(name) from None

    async def databases_of(self, account_id: UUID | None) -> list[str]:
        """Every tenant database, or the one the account lives in (UnknownAccount if none)."""
        if account_id is None:
            return self._databases.names()
        return [(await self._catalog.require(account_id)).database]

    async def status(self, account_id: UUID | None = None) -> list[ProjectionStatus]:
        """Each projection per tenant database: head, position and pipeline; or one account's lag."""
        databases = await self.databases_of(account_id)
        try:
            client: Client | Exception = await self._temporal.client()
        except Exception as error:  # Temporal down: every pipeline's status is unknown, the lags are not
            client = error
        found = []
        for name, projection in PROJECTIONS.items():
            build = await self._build_seen(client, name)
            for database in databases:
                pool = self._databases.pool(database)
                lag = await self.lag(projection, database, account_id)
                workflow_id = projector_workflow_id(self._temporal.deployment, name, database)
                pipeline = await _pipeline(client, workflow_id)
                refused, held = await parking.counts(pool, name, account_id)
                known = await versions.versions(pool, name)
                live = next((v for v in known if v.state is versions.State.LIVE), None)
                building = None
                for v in known:
                    if v.state is versions.State.BUILDING:
                        shadow = projection.versioned(v.version)
                        shadow_lag = await self.lag(shadow, database, account_id)
                        building = Building(v.version, shadow_lag.head, shadow_lag.position)
                found.append(
                    ProjectionStatus(
                        name,
                        database,
                        projection.stream_types,
                        pipeline,
                        lag.head,
                        lag.position,
                        refused,
                        held,
                        version=live.version if live else 1,
                        shape_changed=live is not None and live.shape != projection.shape,
                        building=building,
                        retired=tuple(v.version for v in known if v.state is versions.State.RETIRED),
                        build=build,
                    )
                )
        return found

    async def _build_seen(self, client: Client | Exception, name: str) -> BuildSeen | None:
        if isinstance(client, Exception):
            return None
        try:
            return await self.builds.seen(name)
        except Exception:  # Temporal gone meanwhile: the build is unknown, the read models are not
            return None

    async def building(self, name: str) -> Building | None:
        """The version of `name` being built, with its position and head summed over the tenant
        databases (from its checkpoints, which each chunk moves as it commits); None if none is."""
        projection = self.projection(name)
        found: list[Building] = []
        for database in self._databases.names():
            pool = self._databases.pool(database)
            version = await versions.building(pool, name)
            if version is not None:
                lag = await self.lag(projection.versioned(version.version), database, None)
                found.append(Building(version.version, lag.head, lag.position))
        if not found:
            return None
        return Building(found[0].version, sum(b.head for b in found), sum(b.position for b in found))

    async def build_new_shapes(self) -> list[str]:
        """Start a build of every projection whose shape, as this release's model gives it, no
        version of it has had in some tenant database: a release that changed a read model's
        shape raises its version. A shape any version had (an older release's, on a worker not yet
        replaced) starts nothing. The projections whose builds it started (or found running)."""
        started: set[str] = set()
        for database in self._databases.names():
            started.update(await versions.new_shapes(self._databases.pool(database), PROJECTIONS.values()))
        for name in sorted(started):
            # BuildRefused: one runs already (another worker of this release started it).
            with contextlib.suppress(BuildRefused):
                await self.builds.start(name, self._databases.names())
        return sorted(started)

    async def build(self, name: str) -> str:
        """Start building a new version of `name` beside the live one, in every tenant database, as
        a workflow; its id. BuildRefused if one is running."""
        self.projection(name)
        return await self.builds.start(name, self._databases.names())

    async def abort(self, name: str) -> str:
        """Abort the running build of `name` (its new version is dropped); the workflow's id.
        BuildRefused if none is being built."""
        self.projection(name)
        return await self.builds.abort(name)

    async def parked(
        self, name: str | None = None, account_id: UUID | None = None, limit: int = 1000
    ) -> list[ParkedEvent]:
        """Parked events, refused and held, of one projection or all, one account or all, by stream
        and in stream order: at most `limit`."""
        if name is not None:
            self.projection(name)
        found: list[ParkedEvent] = []
        for database in await self.databases_of(account_id):
            found += await parking.parked(
                self._databases.pool(database), name, account_id, limit - len(found)
            )
            if len(found) >= limit:
                break
        return found

    async def release(self, name: str, account_id: UUID, stream_id: str, *, skip: bool = False) -> Released:
        """Retry one stream's parked events in `name` (`skip`: all but the refused one), in order;
        `queries.projector.parking.NothingParked` if it has none."""
        projection = self.projection(name)
        [database] = await self.databases_of(account_id)
        pool = self._databases.pool(database)
        return await parking.release(pool, projection, self._feed, account_id, stream_id, skip=skip)

    async def lag(self, projection: ModelProjection, database: str, account_id: UUID | None) -> Lag:
        """How far `projection` is in one database (for one account, or all)."""
        checkpoints = Checkpoints(projection.name, projection.stream_types)
        return await checkpoints.lag(self._databases.pool(database), account_id)

    async def events(self, name: str, account_id: UUID | None = None) -> int:
        """How many events a rebuild of `name` (for one account, or all) replays."""
        projection = self.projection(name)
        databases = await self.databases_of(account_id)
        return sum([(await self.lag(projection, d, account_id)).head for d in databases])

    async def rebuild(self, name: str, account_id: UUID | None = None) -> Rebuild:
        """Start rebuilding `name` (one account's read model, or every account's) as a workflow."""
        self.projection(name)
        databases = await self.databases_of(account_id)
        return await start_rebuild(self._temporal, name, databases, account_id)

    async def progress(self, rebuild: Rebuild) -> RebuildProgress | None:
        """The rebuild's last heartbeat (None before the first)."""
        return await rebuild_progress(await self._temporal.client(), rebuild)


async def _pipeline(client: Client | Exception, workflow_id: str) -> str:
    """The projector workflow's status, or Unknown (why): Temporal down, or the workflow missing."""
    try:
        if isinstance(client, Exception):
            raise client
        description = await client.get_workflow_handle(workflow_id).describe()
    except Exception as error:
        return f"Unknown ({type(error).__name__})"
    return description.status.name.title() if description.status else "Unknown"
