"""The Litestar app factory: controllers, dependencies, plugins (channels, problem details, tracing)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin

from commands.handlers import command_specs
from commands.model import Model
from commands.openapi import DocumentWithCommands
from commands.registry import COMMANDS
from commands.routes import ERRORS as COMMAND_ERRORS
from commands.routes import CommandController, CustomisationController
from erp.bootstrap import Services
from erp.health import health
from erp.problems import problem_details_plugin
from erp.redis_client import redis_client
from erp.settings import Settings
from erp.telemetry import configure_logging, configure_telemetry
from queries.routes import NotificationController, ProjectionController, QueryController, query_routes
from tenancy.routes import AccountController

MAX_BODY = 1024 * 1024


def _services(state: State) -> Services:
    services: Services = state.services
    return services


def create_app(settings: Settings | None = None, model: Model | None = None) -> Litestar:
    """The API, configured from `settings` (the environment by default), serving `model` (the ERP)."""
    settings = settings or Settings()
    commands = COMMANDS if model is None else command_specs(model)
    tracing = configure_telemetry("erp-api") is not None
    channels = ChannelsPlugin(
        backend=RedisChannelsPubSubBackend(redis=redis_client(settings.redis_url)),
        arbitrary_channels_allowed=True,
        subscriber_max_backlog=1000,
        subscriber_backlog_strategy="dropleft",
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.services = await Services.start(settings, channels, commands)
        try:
            yield
        finally:
            await app.state.services.close()

    return Litestar(
        route_handlers=[
            AccountController,
            CommandController,
            CustomisationController,
            *query_routes(),
            QueryController,
            NotificationController,
            ProjectionController,
            health,
        ],
        dependencies={"services": Provide(_services, sync_to_thread=False)},
        plugins=[
            channels,
            problem_details_plugin(COMMAND_ERRORS),
            *([OpenTelemetryPlugin(OpenTelemetryConfig())] if tracing else []),
        ],
        lifespan=[lifespan],
        request_max_body_size=MAX_BODY,
        logging_config=None,  # erp.telemetry.configure_logging's JSON lines, not Litestar's own
        openapi_config=OpenAPIConfig(
            title="ERP",
            version="0.1.0",
            render_plugins=[RedocRenderPlugin(), SwaggerRenderPlugin(), DocumentWithCommands(commands)],
        ),
    )


def serve_app() -> Litestar:
    """The factory for each of `erp api --workers N`'s processes: structured logs, then the app."""
    configure_logging()
    return create_app()
