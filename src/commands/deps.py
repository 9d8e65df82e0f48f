"""The command side's dependencies for the HTTP layer: `commands` and `customisations`, both of the
caller's database (they depend on tenancy's `tenant`)."""

from __future__ import annotations

from litestar.di import Provide

from commands.customisation import Customisations
from commands.pipelines import CommandPipelines
from commands.service import CommandService
from tenancy.routing import Route


def command_dependencies(pipelines: CommandPipelines) -> dict[str, Provide]:
    def commands(tenant: Route) -> CommandService:
        return pipelines.of(tenant)

    def customisations(tenant: Route) -> Customisations:
        return pipelines.customisations(tenant)

    return {
        "commands": Provide(commands, sync_to_thread=False),
        "customisations": Provide(customisations, sync_to_thread=False),
    }
