"""What operators do with projections: see each one's status and lag, rebuild one as a workflow, and
list, retry or skip the events a read model refused (`queries.projector.parking`).

The API (`workflows.http`) and the CLI (`erp projections ...`) both go through here, so a
projection's status is computed in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from temporalio.client import Client, WorkflowHandle

from commands.store.feed import EventFeed
from core.temporal import TemporalGateway
from queries.projection import Projection
from queries.projector import Checkpoints, Lag, parking
from queries.projector.parking import ParkedEvent, Released
from queries.registry import PROJECTIONS
from tenancy.catalog import AccountCatalog
from tenancy.routing import Databases
from workflows.messages import RebuildProgress, RebuildResult
from workflows.starters import projector_workflow_id, rebuild_progress, start_rebuild
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

    @property
    def events_behind(self) -> int:
        return self.head - self.position


class ProjectionOperations:
    """Status, rebuilds and parked events of every projection in every tenant database."""

    def __init__(
        self, databases: Databases, catalog: AccountCatalog, temporal: TemporalGateway, feed: EventFeed
    ) -> None:
        self._databases = databases
        self._catalog = catalog
        self._temporal = temporal
        self._feed = feed
        """How a retry reads the parked events back: upcast as the projectors read them."""

    @staticmethod
    def projection(name: str) -> Projection:
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
            for database in databases:
                lag = await self.lag(projection, database, account_id)
                workflow_id = projector_workflow_id(self._temporal.deployment, name, database)
                pipeline = await _pipeline(client, workflow_id)
                refused, held = await parking.counts(self._databases.pool(database), name, account_id)
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
                    )
                )
        return found

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

    async def lag(self, projection: Projection, database: str, account_id: UUID | None) -> Lag:
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
