"""Query API (GET /queries/{QueryName}), notifications (SSE) and operator projection endpoints."""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, post
from litestar.channels import ChannelsPlugin
from litestar.di import NamedDependency, Provide
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, QueryParameter
from litestar.response import ServerSentEvent

from erp.bootstrap import Services
from erp.consistency import InvalidToken, decode_token
from erp.problems import problem, problem_responses
from queries.notifications import channel_for
from queries.paging import InvalidCursor, Page
from queries.projector import Projector
from queries.registry import PROJECTIONS
from queries.views import QUERIES, ListParams, QuerySpec
from tenancy.auth import operator_guard, tenant_route
from tenancy.rls import tenant_transaction
from tenancy.routing import Route
from workflows.starters import projector_workflow_id, start_rebuild

MAX_TIMEOUT = 30.0
DEFAULT_TIMEOUT = 5.0


class Items(msgspec.Struct, rename="pascal", omit_defaults=True):
    items: list[Any]
    next: str | None = None
    """The cursor for the next page (pass it as `After`); absent on the last page."""


def _timeout(raw: str | None) -> float:
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= MAX_TIMEOUT:
        raise problem(422, f"Timeout must be a number of seconds from 0 to {MAX_TIMEOUT:g}, got {raw!r}")
    return value


async def run_query(
    spec: QuerySpec, request: Request[Any, Any, Any], tenant: Route, services: Services
) -> Page[Any]:
    """Validate the query's parameters, wait for ConsistentWith if asked, run it under RLS."""
    raw = dict(request.query_params)
    token = raw.pop("ConsistentWith", None)
    timeout = _timeout(raw.pop("Timeout", None))
    try:
        params = msgspec.convert(raw, spec.params, strict=False)
    except msgspec.ValidationError as error:
        raise problem(422, f"{spec.name}: {error}") from None
    if token is not None:
        try:
            targets = decode_token(token)
        except InvalidToken as error:
            raise problem(422, str(error)) from None
        deadline = time.monotonic() + timeout
        for name in spec.projections:
            projection = PROJECTIONS[name]
            remaining = max(0.0, deadline - time.monotonic())
            if not await services.waiter.wait(
                services.pool(tenant), tenant.account_id, name, projection.stream_types, targets, remaining
            ):
                raise problem(
                    503,
                    f"the {name} read model has not caught up with {token} within {timeout:g} s",
                    {"Retry-After": "1"},
                )
    async with tenant_transaction(services.pool(tenant), tenant.account_id) as connection:
        try:
            return await spec.run(connection, params)
        except InvalidCursor as error:
            raise problem(422, f"{spec.name}: {error}") from None


CONSISTENT_WITH = Annotated[
    str | None,
    QueryParameter(
        name="ConsistentWith", description="A ConsistencyToken: wait until the read model has it."
    ),
]
TIMEOUT = Annotated[
    float | None,
    QueryParameter(
        name="Timeout", description=f"Seconds to wait for ConsistentWith (at most {MAX_TIMEOUT:g})."
    ),
]


def query_route(spec: QuerySpec) -> HTTPRouteHandler:
    """GET /queries/<Name>, with its parameters and result documented in OpenAPI."""
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [("items", list[spec.item])]  # type: ignore[name-defined]
    if issubclass(spec.params, ListParams):
        fields.append(("next", str | None, None))
    result = msgspec.defstruct(f"{spec.name}Result", fields, rename="pascal", omit_defaults=True)

    async def handler(request: Request[Any, Any, Any], tenant: Route, services: Services, **_: Any) -> Any:
        page = await run_query(spec, request, tenant, services)
        return result(page.items, page.next) if page.next else result(page.items)

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("request", keyword, annotation=Request[Any, Any, Any]),
        inspect.Parameter("tenant", keyword, annotation=NamedDependency[Route]),
        inspect.Parameter("services", keyword, annotation=NamedDependency[Services]),
    ]
    for field in msgspec.structs.fields(spec.params):
        # Named as on the wire (PascalCase, so never one of Litestar's reserved lowercase names):
        # Litestar's validation errors then name the parameter the client sent.
        documented = Annotated[field.type, QueryParameter(required=field.required)]  # type: ignore[name-defined]
        default = inspect.Parameter.empty if field.required else field.default
        if default is msgspec.NODEFAULT:
            default = None
        wire = field.encode_name
        parameters.append(inspect.Parameter(wire, keyword, default=default, annotation=documented))
    parameters.append(inspect.Parameter("consistent_with", keyword, default=None, annotation=CONSISTENT_WITH))
    parameters.append(inspect.Parameter("timeout", keyword, default=None, annotation=TIMEOUT))
    handler.__signature__ = inspect.Signature(parameters, return_annotation=result)  # type: ignore[attr-defined]
    handler.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": result}
    handler.__name__ = f"query_{spec.name}"
    return get(
        f"/queries/{spec.name}",
        summary=spec.name,
        operation_id=spec.name,
        tags=["queries"],
        responses=problem_responses(400, 401, 422, 503),
        dependencies={"tenant": Provide(tenant_route)},
    )(handler)


def query_routes() -> list[HTTPRouteHandler]:
    return [query_route(spec) for spec in QUERIES.values()]


class QueryController(Controller):
    """Unknown query names land here: 404 with the list of known ones."""

    path = "/queries"
    tags = ["queries"]
    dependencies = {"tenant": Provide(tenant_route)}

    @get("/{query_name:str}", summary="Run a query by name", include_in_schema=False)
    async def run(
        self,
        request: Request[Any, Any, Any],
        query_name: FromPath[str],
        tenant: NamedDependency[Route],
        services: NamedDependency[Services],
    ) -> Items:
        spec = QUERIES.get(query_name)
        if spec is None:
            raise problem(404, f"there is no query named {query_name!r}; known: {', '.join(QUERIES)}")
        page = await run_query(spec, request, tenant, services)
        return Items(page.items, page.next)


class NotificationController(Controller):
    path = "/notifications"
    tags = ["queries"]
    dependencies = {"tenant": Provide(tenant_route)}

    @get("/", summary="Stream read-model notifications (SSE)", responses=problem_responses(401, 503))
    async def stream(
        self, tenant: NamedDependency[Route], channels: NamedDependency[ChannelsPlugin]
    ) -> ServerSentEvent:
        """Server-Sent Events: `{"Projection","StreamType","Position"}` for the caller's account only."""

        async def events() -> AsyncIterator[str]:
            async with channels.start_subscription(channel_for(tenant.account_id)) as subscriber:
                async for message in subscriber.iter_events():
                    yield message.decode()

        return ServerSentEvent(events())


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


async def _pipeline_status(services: Services, name: str, database: str) -> str:
    try:
        client = await services.temporal.client()
        handle = client.get_workflow_handle(projector_workflow_id(name, database))
        description = await handle.describe()
    except Exception as error:  # Temporal down or workflow missing: say so, don't fail the listing
        return f"Unknown ({type(error).__name__})"
    return description.status.name.title() if description.status else "Unknown"


class ProjectionController(Controller):
    path = "/projections"
    tags = ["operators"]
    guards = [operator_guard]

    @get(
        "/",
        summary="List projections with status and lag",
        responses=problem_responses(401, 404, 422, 503),
    )
    async def status(
        self,
        services: NamedDependency[Services],
        account: Annotated[
            str | None,
            QueryParameter(
                name="AccountId", description="Only this account's lag (in its database).", format="uuid"
            ),
        ] = None,
    ) -> list[ProjectionView]:
        """Each projection per tenant database: its head, position and lag, or one account's."""
        databases = list(services.databases)
        account_id: UUID | None = None
        if account is not None:
            try:
                account_id = UUID(account)
            except ValueError:
                raise problem(422, f"AccountId must be an account's id (a UUID), not {account!r}") from None
            found = await services.catalog.get(account_id)
            if found is None:
                raise problem(404, f"there is no account {account_id}")
            databases = [(found.database, services.databases.pool(found.database))]
        views = []
        for name, projection in PROJECTIONS.items():
            for database, pool in databases:
                lag = await Projector(pool, projection).lag(account_id)
                views.append(
                    ProjectionView(
                        name,
                        database,
                        list(projection.stream_types),
                        await _pipeline_status(services, name, database),
                        lag.head,
                        lag.position,
                        lag.events_behind,
                    )
                )
        return views

    @post(
        "/{name:str}/rebuild",
        status_code=202,
        summary="Rebuild a projection (a workflow)",
        responses=problem_responses(400, 401, 404, 422, 503),
    )
    async def rebuild(
        self,
        name: FromPath[str],
        services: NamedDependency[Services],
        request: Request[Any, Any, Any],
    ) -> RebuildStarted:
        if name not in PROJECTIONS:
            raise problem(404, f"there is no projection named {name!r}; known: {', '.join(PROJECTIONS)}")
        body = await request.body()
        try:
            data = msgspec.json.decode(body, type=RebuildRequest) if body.strip() else RebuildRequest()
        except msgspec.ValidationError as error:
            raise problem(422, str(error)) from None
        except msgspec.DecodeError as error:
            raise problem(400, f"the body is not valid JSON: {error}") from None
        databases = services.databases.names()
        if data.account_id is not None:
            account = await services.catalog.get(data.account_id)
            if account is None:
                raise problem(404, f"there is no account {data.account_id}")
            databases = [account.database]
        client = await services.temporal.client()
        handle = await start_rebuild(client, services.settings.task_queue, name, databases, data.account_id)
        return RebuildStarted(handle.id)
