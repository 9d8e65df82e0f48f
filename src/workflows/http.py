"""Operator API for projections: GET /projections (status and lag), POST /projections/{Name}/rebuild.

The app guards these with the operator token.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from core.bodies import decode
from core.problems import problem, problem_responses
from tenancy.catalog import UnknownAccount
from workflows.operations import ProjectionOperations, UnknownProjection


class ProjectionView(msgspec.Struct, rename="pascal"):
    name: str
    database: str
    stream_types: list[str]
    pipeline: str
    head: int
    position: int
    events_behind: int


class RebuildRequest(msgspec.Struct, forbid_unknown_fields=True, rename="pascal"):
    account_id: UUID | None = None


class RebuildStarted(msgspec.Struct, rename="pascal"):
    workflow_id: str


class ProjectionController(Controller):
    path = "/projections"
    tags = ["operators"]

    @get(
        "/",
        summary="List projections with status and lag",
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
        account_id: UUID | None = None
        if account is not None:
            try:
                account_id = UUID(account)
            except ValueError:
                raise problem(422, f"AccountId must be an account's id (a UUID), not {account!r}") from None
        try:
            found = await projections.status(account_id)
        except UnknownAccount as error:
            raise problem(404, str(error)) from None
        return [
            ProjectionView(
                s.name, s.database, list(s.stream_types), s.pipeline, s.head, s.position, s.events_behind
            )
            for s in found
        ]

    @post(
        "/{name:str}/rebuild",
        status_code=202,
        summary="Rebuild a projection (a workflow)",
        responses=problem_responses(400, 401, 404, 422, 503),
    )
    async def rebuild(
        self,
        name: FromPath[str],
        projections: NamedDependency[ProjectionOperations],
        request: Request[Any, Any, Any],
    ) -> RebuildStarted:
        try:
            projections.projection(name)
        except UnknownProjection as error:
            raise problem(404, str(error)) from None
        # The body is optional (none: every account), so it is read here rather than as `data`, but
        # by the same strict decoder: MalformedBody is a 400, InvalidBody a 422 (core.problems).
        body = await request.body()
        data = decode(body, RebuildRequest) if body.strip() else RebuildRequest()
        try:
            handle = await projections.rebuild(name, data.account_id)
        except UnknownAccount as error:
            raise problem(404, str(error)) from None
        return RebuildStarted(handle.id)
