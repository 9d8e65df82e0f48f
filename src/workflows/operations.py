"""What operators do with projections: see each one's status and lag, and rebuild one as a workflow.

The API (`workflows.http`) and the CLI (`erp projections ...`) both go through here, so a
projection's status is computed in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from temporalio.client import Client, WorkflowHandle

from core.temporal import TemporalGateway
from queries.projection import Projection
from queries.projector import Checkpoints, Lag
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

    @property
    def events_behind(self) -> int:
        return self.head - self.position


class ProjectionOperations:
    """Status and rebuilds of every projection in every tenant database."""

    def __init__(self, databases: Databases, catalog: AccountCatalog, temporal: TemporalGateway) -> None:
        self._databases = databases
        self._catalog = catalog
        self._temporal = temporal

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
                found.append(
                    ProjectionStatus(
                        name, database, projection.stream_types, pipeline, lag.head, lag.position
                    )
                )
        return found

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
