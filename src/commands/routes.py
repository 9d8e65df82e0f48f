"""Command API: POST /commands/{CommandName}."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from litestar import Controller, Request, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, HeaderParameter
from litestar.plugins.problem_details import ProblemDetailsException

from commands.errors import (
    BusinessRuleViolation,
    IdempotencyKeyReused,
    InvalidCommand,
    MalformedCommand,
    StreamNotFound,
    UnknownCommand,
)
from commands.event_store import ConcurrencyConflict
from commands.service import CommandResult
from erp.bootstrap import Services
from erp.problems import problem
from tenancy.auth import tenant_route
from tenancy.routing import Route

MAX_IDEMPOTENCY_KEY = 200

ERRORS: dict[type[Exception], Callable[[Any], ProblemDetailsException]] = {
    UnknownCommand: lambda e: problem(404, str(e)),
    StreamNotFound: lambda e: problem(404, str(e)),
    MalformedCommand: lambda e: problem(400, str(e)),
    InvalidCommand: lambda e: problem(422, str(e)),
    BusinessRuleViolation: lambda e: problem(422, str(e)),
    IdempotencyKeyReused: lambda e: problem(422, str(e)),
    ConcurrencyConflict: lambda e: problem(409, str(e)),
}


class CommandController(Controller):
    path = "/commands"
    tags = ["commands"]
    dependencies = {"tenant": Provide(tenant_route)}

    @post("/{command_name:str}", status_code=200, summary="Run a command")
    async def run(
        self,
        request: Request[Any, Any, Any],
        command_name: FromPath[str],
        tenant: NamedDependency[Route],
        services: NamedDependency[Services],
        key: Annotated[
            str | None,
            HeaderParameter(name="Idempotency-Key", description="Retries with the same key run once."),
        ] = None,
    ) -> CommandResult:
        """Run `CommandName` for the caller's account. Send `Idempotency-Key` to make retries safe."""
        if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY):
            raise problem(422, f"Idempotency-Key must have 1 to {MAX_IDEMPOTENCY_KEY} characters")
        commands = services.commands(tenant)
        parsed = commands.parse(command_name, await request.body())
        return await commands.execute(tenant.account_id, parsed, key)
