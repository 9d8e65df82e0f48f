"""Query API: GET /queries/{QueryName}, one documented route per query, and unknown names' 404."""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, QueryParameter

from core.problems import FieldError, field_error, problem, problem_responses
from core.tokens import InvalidToken, decode_token
from queries.paging import InvalidCursor, Page
from queries.reader import TenantReader
from queries.registry import WAITABLE
from queries.shown import Scope
from queries.views import QUERIES, ListParams, QuerySpec
from tenancy.auth import TENANT_SECURITY

SCOPES = {spec.name: spec.scope for spec in QUERIES.values() if spec.scope is not None}
"""The queries whose wait looks at a scope of their own (`QuerySpec.reads`), computed once."""


@dataclass(frozen=True, slots=True)
class Scoped:
    """A scope to wait on, as a read model is."""

    scope: Scope


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
        detail = f"Timeout must be a number of seconds from 0 to {MAX_TIMEOUT:g}, got {raw!r}"
        raise problem(422, detail, errors=[FieldError(detail, parameter="Timeout")])
    return value


async def run_query(spec: QuerySpec, request: Request[Any, Any, Any], reader: TenantReader) -> Page[Any]:
    """Validate the query's parameters, wait for ConsistentWith if asked, run it under RLS."""
    raw = dict(request.query_params)
    token = raw.pop("ConsistentWith", None)
    timeout = _timeout(raw.pop("Timeout", None))
    try:
        params = msgspec.convert(raw, spec.params, strict=False)
    except msgspec.ValidationError as error:
        found = field_error(str(error))
        wrong = FieldError(found.detail, parameter=found.pointer.lstrip("/") if found.pointer else None)
        raise problem(422, f"{spec.name}: {error}", errors=[wrong]) from None
    if isinstance(params, ListParams):
        try:
            params.seek()  # a cursor this query did not give is refused here, before any SQL
        except InvalidCursor as error:
            raise _bad_cursor(spec, error) from None
    if token is not None:
        try:
            targets = decode_token(token)
        except InvalidToken as error:
            raise problem(
                422, str(error), errors=[FieldError(str(error), parameter="ConsistentWith")]
            ) from None
        deadline = time.monotonic() + timeout
        scope = SCOPES.get(spec.name)
        waits = (
            [(spec.name, Scoped(scope))] if scope else [(name, WAITABLE[name]) for name in spec.projections]
        )
        for name, waitable in waits:
            remaining = max(0.0, deadline - time.monotonic())
            if not await reader.caught_up(waitable, targets, remaining):
                raise problem(
                    503,
                    f"the {name} read model has not caught up with {token} within {timeout:g} s",
                    {"Retry-After": "1"},
                )
    try:
        page = await reader.run(spec, params)
    except InvalidCursor as error:
        raise _bad_cursor(spec, error) from None
    if not page.items and not isinstance(params, ListParams):
        # One element by its id (GetCustomer): none is a 404, as an unknown resource is.
        raise problem(404, f"{spec.name}: {_asked(raw)} is not in the read model (yet: see ConsistentWith)")
    return page


def _bad_cursor(spec: QuerySpec, error: InvalidCursor) -> Exception:
    return problem(422, f"{spec.name}: {error}", errors=[FieldError(str(error), parameter="After")])


def _asked(raw: dict[str, str]) -> str:
    return ", ".join(f"{name} {value}" for name, value in raw.items()) or "nothing"


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

    async def handler(request: Request[Any, Any, Any], reader: TenantReader, **_: Any) -> Any:
        page = await run_query(spec, request, reader)
        return result(page.items, page.next) if page.next else result(page.items)

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("request", keyword, annotation=Request[Any, Any, Any]),
        inspect.Parameter("reader", keyword, annotation=NamedDependency[TenantReader]),
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
    single = not issubclass(spec.params, ListParams)
    return get(
        f"/queries/{spec.name}",
        summary=spec.name,
        operation_id=spec.name[0].lower() + spec.name[1:],  # getOrders: a generated client's get_orders
        tags=["queries"],
        security=TENANT_SECURITY,
        responses=problem_responses(400, 401, *((404,) if single else ()), 422, 429, 503),
    )(handler)


def query_routes() -> list[HTTPRouteHandler]:
    return [query_route(spec) for spec in QUERIES.values()]


class QueryController(Controller):
    """Unknown query names land here: 404 with the list of known ones."""

    path = "/queries"
    tags = ["queries"]

    @get("/{query_name:str}", summary="Run a query by name", include_in_schema=False)
    async def run(
        self,
        request: Request[Any, Any, Any],
        query_name: FromPath[str],
        reader: NamedDependency[TenantReader],
    ) -> Items:
        spec = QUERIES.get(query_name)
        if spec is None:
            raise problem(404, f"there is no query named {query_name!r}; known: {', '.join(QUERIES)}")
        page = await run_query(spec, request, reader)
        return Items(page.items, page.next)
