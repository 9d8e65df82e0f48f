"""Command API: POST /commands/{CommandName}, and /customisations (an account's own attributes)."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody
from litestar.plugins.problem_details import ProblemDetailsException

from commands.customisation import NAME, CustomAttribute, Customisations
from commands.erp_model import ERP
from commands.errors import (
    BusinessRuleViolation,
    IdempotencyKeyReused,
    InvalidCommand,
    MalformedCommand,
    StreamNotFound,
    UnknownCommand,
)
from commands.openapi import MAX_IDEMPOTENCY_KEY
from commands.service import CommandResult, CommandService
from commands.store.event_store import ConcurrencyConflict
from core.problems import FieldError, problem, problem_responses
from core.strict_body import StrictBody
from tenancy.auth import TENANT_SECURITY
from tenancy.bulkhead import HEAVY_BODY
from tenancy.fences import AccountElsewhere
from tenancy.routing import Route

ERRORS: dict[type[Exception], Callable[[Any], ProblemDetailsException]] = {
    UnknownCommand: lambda e: problem(404, str(e)),
    StreamNotFound: lambda e: problem(404, str(e)),
    MalformedCommand: lambda e: problem(400, str(e)),
    InvalidCommand: lambda e: problem(422, str(e), errors=[FieldError(e.reason, e.pointer)]),
    BusinessRuleViolation: lambda e: problem(422, str(e)),
    IdempotencyKeyReused: lambda e: problem(422, str(e)),
    ConcurrencyConflict: lambda e: problem(409, str(e)),
    AccountElsewhere: lambda e: problem(503, str(e), {"Retry-After": "1"}),
}


IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(name="Idempotency-Key", description="Retries with the same key run once."),
]


def _check_key(key: str | None) -> None:
    if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY):
        detail = f"Idempotency-Key must have 1 to {MAX_IDEMPOTENCY_KEY} characters"
        raise problem(422, detail, errors=[FieldError(detail, parameter="Idempotency-Key")])


class CommandController(Controller):
    """Every command, by name (unknown names: 404 with the known ones).

    One route for all commands; each one's operation in the OpenAPI document comes from
    `commands.openapi`.
    """

    path = "/commands"
    tags = ["commands"]

    @post("/{command_name:str}", status_code=200, summary="Run a command by name", include_in_schema=False)
    async def run(
        self,
        request: Request[Any, Any, Any],
        command_name: FromPath[str],
        command_tenant: NamedDependency[Route],
        commands: NamedDependency[CommandService],
        key: IdempotencyKey = None,
    ) -> CommandResult:
        """Run `CommandName` for the caller's account. Send `Idempotency-Key` to make retries safe.

        `command_tenant` has counted the command against the account's rate limit (429 over it)
        before the body is read.
        """
        _check_key(key)
        body = await request.body()
        parsed = commands.parse(command_name, body)
        if len(body) >= HEAVY_BODY:
            # A thousand lines take milliseconds to decode and as long again to decide: other
            # accounts' requests get the event loop between the two.
            await asyncio.sleep(0)
        return await commands.execute(command_tenant.account_id, parsed, key)


class DefineAttribute(msgspec.Struct, forbid_unknown_fields=True, rename="pascal"):
    """A custom attribute for one element of the model, in the caller's account only."""

    element: str
    attribute: Annotated[str, msgspec.Meta(pattern=NAME.pattern)]
    type: Literal["string", "integer", "money", "boolean", "date"]
    required: bool = False
    max_length: Annotated[int, msgspec.Meta(ge=1, le=4000)] | None = None


class AttributeView(msgspec.Struct, rename="pascal", omit_defaults=True):
    element: str
    attribute: str
    type: str
    required: bool = False
    max_length: int | None = None


class CustomisationController(Controller):
    """An account's own attributes on the model's elements (no restart needed)."""

    path = "/customisations"
    tags = ["customisations"]
    security = TENANT_SECURITY

    @post(
        "/",
        status_code=201,
        summary="Add a custom attribute to an element",
        operation_id="defineAttribute",
        responses=problem_responses(400, 401, 409, 422, 429, 503),
        dto=StrictBody[DefineAttribute],  # strict, as command bodies: "MaxLength": "10" is a 422
        return_dto=None,
    )
    async def define(
        self,
        data: JSONBody[DefineAttribute],
        command_tenant: NamedDependency[Route],
        customisations: NamedDependency[Customisations],
    ) -> AttributeView:
        """A write like a command: it counts against the account's command rate limit (429 over it)."""
        element = ERP.elements.get(data.element)
        if element is None:
            raise problem(
                422, f"Element: there is no element {data.element!r}; known: {', '.join(ERP.elements)}"
            )
        if any(a.name == data.attribute for a in element.attributes):
            raise problem(422, f"Attribute: {data.element} already has a model attribute {data.attribute}")
        attribute = CustomAttribute(data.element, data.attribute, data.type, data.required, data.max_length)
        if not await customisations.define(command_tenant.account_id, attribute):
            raise problem(
                409, f"{data.element} already has a custom attribute {data.attribute} in this account"
            )
        return AttributeView(data.element, data.attribute, data.type, data.required, data.max_length)

    @get(
        "/",
        summary="The account's custom attributes",
        operation_id="listAttributes",
        responses=problem_responses(401, 429, 503),
    )
    async def list(
        self, tenant: NamedDependency[Route], customisations: NamedDependency[Customisations]
    ) -> builtins.list[AttributeView]:  # `list` here is this method
        definitions = await customisations.for_account(tenant.account_id)
        return [
            AttributeView(d.element, d.attribute, d.type, d.required, d.max_length)
            for by_name in definitions.values()
            for d in by_name.values()
        ]
