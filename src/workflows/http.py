"""Operator API for projections: GET /projections (status, lag, versions and builds), POST
/projections/{Name}/rebuild (a new version built blue/green, or one account's in place) and /abort,
GET /projections/parked (the events read models refused, and those held behind them), and POST
/projections/{Name}/parked/retry and /skip (one stream's); GET /operations (the builds, rebuilds and
moves running or lately ended, with their progress).

The app guards these with the operator token.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from core.problems import FieldError, problem, problem_responses
from core.strict_body import OptionalBodyOperation, OptionalStrictBody, StrictBody
from core.text import NO_NUL
from queries.projector.parking import NothingParked
from tenancy.catalog import UnknownAccount
from workflows.operations import Building, ProjectionOperations, UnknownProjection
from workflows.running import OperatorWorkflow, OperatorWorkflows
from workflows.starters import BuildRefused, BuildSeen

MAX_PARKED = 1000
"""Parked events one answer lists at most."""


class BuildingView(msgspec.Struct, rename="pascal"):
    """A version being built beside the live one: how far it is."""

    version: int
    head: int
    position: int
    events_behind: int


class BuildView(msgspec.Struct, rename="pascal", omit_defaults=True):
    """The projection's latest build workflow."""

    workflow_id: str
    status: str
    phase: str
    events_replayed: int | None = None
    """Events replayed into the new version so far (from the running step's last heartbeat)."""
    events_to_replay: int | None = None
    error: str | None = None


class ProjectionView(msgspec.Struct, rename="pascal", omit_defaults=True):
    name: str
    database: str
    stream_types: list[str]
    pipeline: str
    head: int
    position: int
    events_behind: int
    parked: int
    """Events the read model refused, waiting for an operator (GET /projections/parked)."""
    held: int
    """Later events of their streams, held back behind them."""
    version: int
    """The live version, which queries read."""
    shape_changed: bool
    """The deployed model gives the read model another shape: build a new version (POST .../rebuild)."""
    retired: list[int]
    """Versions switched out, kept until their grace period ends."""
    building: BuildingView | None = None
    build: BuildView | None = None


class ParkedEventView(msgspec.Struct, rename="pascal", omit_defaults=True):
    projection: str
    account_id: UUID
    stream_id: str
    stream_type: str
    sequence_number: int
    event: str
    reason: str
    parked_at: str
    held_behind: int | None = None
    """The SequenceNumber of the refused event this one waits behind; absent: refused itself."""


class ReleaseRequest(msgspec.Struct, forbid_unknown_fields=True, rename="pascal"):
    account_id: UUID
    stream_id: Annotated[str, msgspec.Meta(min_length=1, max_length=300, pattern=NO_NUL)]


class ReleasedView(msgspec.Struct, rename="pascal", omit_defaults=True):
    applied: int
    skipped: int
    still_parked: int
    reason: str | None = None
    """Why the first event still parked was refused again."""


class RebuildRequest(msgspec.Struct, forbid_unknown_fields=True, rename="pascal"):
    account_id: UUID | None = None


class RebuildStarted(msgspec.Struct, rename="pascal"):
    workflow_id: str


def _building(building: Building | None) -> BuildingView | None:
    if building is None:
        return None
    return BuildingView(building.version, building.head, building.position, building.head - building.position)


def _build(build: BuildSeen | None) -> BuildView | None:
    if build is None:
        return None
    progress = build.progress
    return BuildView(
        build.workflow_id,
        build.status,
        build.phase,
        progress.events if progress else None,
        progress.total if progress else None,
        build.error,
    )


class ProjectionController(Controller):
    path = "/projections"
    tags = ["projections"]

    @get(
        "/",
        summary="List projections with status and lag",
        operation_id="listProjections",
        responses=problem_responses(401, 404, 422, 503),
    )
    async def status(
        self,
        projections: NamedDependency[ProjectionOperations],
        account: Annotated[
            str | None,
            QueryParameter(
                name="AccountId", description="Only this account's lag (in its database).", format="uuid"
            ),
        ] = None,
    ) -> list[ProjectionView]:
        """Each projection per tenant database: its head, position and lag, or one account's."""
        account_id = _account(account)
        try:
            found = await projections.status(account_id)
        except UnknownAccount as error:
            raise problem(404, str(error)) from None
        return [
            ProjectionView(
                s.name,
                s.database,
                list(s.stream_types),
                s.pipeline,
                s.head,
                s.position,
                s.events_behind,
                s.parked,
                s.held,
                s.version,
                s.shape_changed,
                list(s.retired),
                _building(s.building),
                _build(s.build),
            )
            for s in found
        ]

    @get(
        "/parked",
        summary="List parked events: those a read model refused, and those held behind them",
        operation_id="listParkedEvents",
        responses=problem_responses(401, 404, 422, 503),
    )
    async def parked(
        self,
        projections: NamedDependency[ProjectionOperations],
        projection: Annotated[
            str | None, QueryParameter(name="Projection", description="Only this projection's.")
        ] = None,
        account: Annotated[
            str | None,
            QueryParameter(name="AccountId", description="Only this account's.", format="uuid"),
        ] = None,
    ) -> list[ParkedEventView]:
        """By projection, account and stream, in stream order; at most 1,000."""
        account_id = _account(account)
        try:
            found = await projections.parked(projection, account_id, MAX_PARKED)
        except (UnknownProjection, UnknownAccount) as error:
            raise problem(404, str(error)) from None
        return [
            ParkedEventView(
                p.projection,
                p.account_id,
                p.stream_id,
                p.stream_type,
                p.sequence_number,
                p.event,
                p.reason,
                p.parked_at.isoformat(),
                p.held_behind,
            )
            for p in found
        ]

    @post(
        "/{name:str}/parked/retry",
        status_code=200,
        summary="Apply one stream's parked events again, in order",
        operation_id="retryParkedEvents",
        responses=problem_responses(400, 401, 404, 422, 503),
        dto=StrictBody[ReleaseRequest],
        return_dto=None,
    )
    async def retry(
        self,
        name: FromPath[str],
        data: JSONBody[ReleaseRequest],
        projections: NamedDependency[ProjectionOperations],
    ) -> ReleasedView:
        """The refused event first, then those held behind it, up to the first still refused."""
        return await _release(projections, name, data, skip=False)

    @post(
        "/{name:str}/parked/skip",
        status_code=200,
        summary="Skip one stream's refused event, and apply those held behind it",
        operation_id="skipParkedEvent",
        responses=problem_responses(400, 401, 404, 422, 503),
        dto=StrictBody[ReleaseRequest],
        return_dto=None,
    )
    async def skip(
        self,
        name: FromPath[str],
        data: JSONBody[ReleaseRequest],
        projections: NamedDependency[ProjectionOperations],
    ) -> ReleasedView:
        """The read model never shows the refused event; the stream's held events are applied after it."""
        return await _release(projections, name, data, skip=True)

    @post(
        "/{name:str}/rebuild",
        status_code=202,
        summary="Rebuild a projection: a new version beside the live one, or one account's in place",
        operation_id="rebuildProjection",
        responses=problem_responses(400, 401, 404, 409, 422, 503),
        dto=OptionalStrictBody[RebuildRequest],  # none: every account; by the same strict decoder
        return_dto=None,
        operation_class=OptionalBodyOperation,
    )
    async def rebuild(
        self,
        name: FromPath[str],
        projections: NamedDependency[ProjectionOperations],
        data: JSONBody[RebuildRequest | None] = None,
    ) -> RebuildStarted:
        """Without a body (or without AccountId): a workflow builds a new version of the read model
        beside the live one, for every account, and switches queries to it once it has caught up;
        the live version serves and projects meanwhile (409 if a build of it runs). With AccountId:
        that account's read model is replayed in place, in one transaction."""
        try:
            projections.projection(name)
        except UnknownProjection as error:
            raise problem(404, str(error)) from None
        if data is None or data.account_id is None:
            try:
                return RebuildStarted(await projections.build(name))
            except BuildRefused as error:
                raise problem(409, str(error)) from None
        try:
            handle = await projections.rebuild(name, data.account_id)
        except UnknownAccount as error:
            raise problem(404, str(error)) from None
        return RebuildStarted(handle.id)

    @post(
        "/{name:str}/abort",
        status_code=202,
        summary="Abort the build of a projection's new version",
        operation_id="abortBuild",
        responses=problem_responses(401, 404, 409, 503),
    )
    async def abort(
        self, name: FromPath[str], projections: NamedDependency[ProjectionOperations]
    ) -> RebuildStarted:
        """The new version is dropped; the live one, which served and projected throughout, stays.
        409 if no build is running that can be aborted (none ran, it ended, or it switched already)."""
        try:
            return RebuildStarted(await projections.abort(name))
        except UnknownProjection as error:
            raise problem(404, str(error)) from None
        except BuildRefused as error:
            raise problem(409, str(error)) from None


class OperationView(msgspec.Struct, rename="pascal", omit_defaults=True):
    """A build, a rebuild or a move: what it works on and how far it is."""

    kind: str
    """Build (a projection's new version), Rebuild (one account's read model in place) or Move."""
    workflow_id: str
    status: str
    started_at: str | None = None
    closed_at: str | None = None
    projection: str | None = None
    account_id: UUID | None = None
    source: str | None = msgspec.field(default=None, name="From")
    target: str | None = msgspec.field(default=None, name="To")
    phase: str = ""
    events_done: int | None = None
    """Events replayed (or copied) so far."""
    events_total: int | None = None
    """Events to replay (or copy), when known."""
    error: str | None = None

    @classmethod
    def of(cls, seen: OperatorWorkflow) -> OperationView:
        return cls(
            seen.kind,
            seen.workflow_id,
            seen.status,
            seen.started_at.isoformat() if seen.started_at else None,
            seen.closed_at.isoformat() if seen.closed_at else None,
            seen.projection,
            seen.account_id,
            seen.source,
            seen.target,
            seen.phase,
            seen.done,
            seen.total,
            seen.error,
        )


class OperationController(Controller):
    path = "/operations"
    tags = ["projections"]

    @get(
        "/",
        summary="List the builds, rebuilds and moves running, or ended in the last ten minutes",
        operation_id="listOperations",
        responses=problem_responses(401, 503),
    )
    async def listed(self, operations: NamedDependency[OperatorWorkflows]) -> list[OperationView]:
        """The latest started first, at most 50, each with its phase and progress (`EventsDone` of
        `EventsTotal`, when known)."""
        return [OperationView.of(seen) for seen in await operations.listed()]


def _account(account: str | None) -> UUID | None:
    if account is None:
        return None
    try:
        return UUID(account)
    except ValueError:
        detail = f"AccountId must be an account's id (a UUID), not {account!r}"
        raise problem(422, detail, errors=[FieldError(detail, parameter="AccountId")]) from None


async def _release(
    projections: ProjectionOperations, name: str, data: ReleaseRequest, *, skip: bool
) -> ReleasedView:
    try:
        released = await projections.release(name, data.account_id, data.stream_id, skip=skip)
    except (UnknownProjection, UnknownAccount, NothingParked) as error:
        raise problem(404, str(error)) from None
    return ReleasedView(released.applied, released.skipped, released.still_parked, released.reason)
