"""The Litestar app factory: controllers, the composition root's dependencies, plugins (channels,
problem details, tracing)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from litestar import Litestar, Router, get
from litestar.config.app import AppConfig
from litestar.config.compression import CompressionConfig
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components
from litestar.plugins import InitPluginProtocol

from commands.handlers import command_specs
from commands.http import ERRORS as COMMAND_ERRORS
from commands.http import CommandController, CustomisationController
from commands.model import Model
from commands.openapi import DocumentWithCommands, parts_route
from commands.registry import COMMANDS
from core.bodies import MAX_BODY
from core.heap import freeze_startup
from core.problems import problem, problem_details_plugin
from core.secret_query import telemetry_plugin
from core.settings import Settings
from core.telemetry import configure_logging, configure_telemetry
from erp.bootstrap import Container
from erp.console import console
from erp.health import health, live
from queries.http import QueryController, query_routes
from queries.sse import NOT_COMPRESSED, NotificationController
from tenancy.auth import OPERATOR_SECURITY, SECURITY_SCHEMES, operator_guard, tenant_guard
from tenancy.http import AccountController
from workflows.http import OperationController, ProjectionController

ALLOWED_HEADERS = ["authorization", "content-type", "idempotency-key", "last-event-id"]
"""What a browser may send across origins: a key, a JSON body, a command's idempotency key, and an
EventSource's Last-Event-ID (sent on its reconnects)."""
EXPOSED_HEADERS = ["Retry-After", "WWW-Authenticate"]
"""What a browser's script may read of an answer besides the safelisted headers: when to retry
(429, 503) and why a key was refused (401)."""
COMPRESSED_FROM = 1024
"""Bytes from which an answer is gzipped for a client that accepts it; smaller ones gain little."""


def cors(settings: Settings) -> CORSConfig | None:
    """CORS for ERP_CORS_ORIGINS; None (no CORS headers, as before) when it names no origin."""
    origins = settings.cors_origin_list
    if not origins:
        return None
    return CORSConfig(
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        allow_credentials=False,  # keys travel in Authorization, never in cookies
        max_age=600,
    )


DRAINING = "draining"
"""The app's state key of the event that ends its notification streams (`begin_draining`)."""


def begin_draining(app: object) -> None:
    """Tell the app (or the ASGI wrappers around it) that the server is stopping: its notification
    streams end now rather than hold the server up until its shutdown timeout."""
    for _ in range(8):  # uvicorn's wrappers (proxy headers, message logger) are a layer or two
        if isinstance(app, Litestar):
            app.state[DRAINING].set()
            return
        app = getattr(app, "app", None)


DESCRIPTION = """A multi-tenant, event-sourced ERP. Tenants send their API key as a bearer token
(TenantApiKey), operators the operator token (OperatorToken). Every error is
`application/problem+json` (ProblemDetails); a 422 lists what is wrong in `errors`, each with a
JSON Pointer into the body. Money is a string of digits with at most two decimals.

The whole document is `/schema/openapi.json`; `/schema/openapi/{Tags}.json` is the part of it with
the operations of some tags (comma-separated: `Order,Customer,queries`), for a client of part of a
big model."""


@get(
    [f"/schema/{page}" for page in ("swagger", "redoc", "elements", "rapidoc", "stoplight", "scalar")],
    include_in_schema=False,
    sync_to_thread=False,
)
def pages_off() -> None:
    """The documentation pages while they are off: a problem (Litestar's own 404 here is HTML)."""
    raise problem(
        404,
        "the API's documentation pages are off (ERP_API_DOCS=1 serves them); "
        "the OpenAPI document is /schema/openapi.json",
    )


class AfterChannels(InitPluginProtocol):
    """Adds a lifespan after the plugins before it (the channels plugin), so it is entered once they
    have started and left before they stop."""

    def __init__(self, lifespan: Callable[[Litestar], AbstractAsyncContextManager[None]]) -> None:
        self._lifespan = lifespan

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.lifespan.append(self._lifespan)
        return app_config


def create_app(settings: Settings | None = None, model: Model | None = None) -> Litestar:
    """The API, configured from `settings` (the environment by default), serving `model` (the ERP)."""
    settings = settings or Settings()
    settings.check_exposure()  # ValueError: never listen beyond loopback with a guessable operator token
    commands = COMMANDS if model is None else command_specs(model)
    tracing = configure_telemetry("erp-api") is not None
    container = Container(settings, commands=commands)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        async with container.running(), container.forgetting():
            if container.command_limiter is not None:
                container.command_limiter.start()  # closed with the container
            freeze_startup()
            yield

    operators = Router(
        "/",
        route_handlers=[AccountController, ProjectionController, OperationController],
        guards=[operator_guard(settings.operator_token, container.auth_failures)],
        security=OPERATOR_SECURITY,
    )
    # Its typed body is decoded before its dependencies run: the key is checked first.
    customisations = Router(
        "/",
        route_handlers=[CustomisationController],
        guards=[tenant_guard(container.keys, container.auth_failures)],
    )
    document = DocumentWithCommands(commands)
    # Swagger UI and ReDoc load their scripts from public CDNs: served only when asked for.
    pages = [RedocRenderPlugin(), SwaggerRenderPlugin()] if settings.api_docs else []
    return Litestar(
        route_handlers=[
            parts_route(document),
            *([] if settings.api_docs else [pages_off]),
            operators,
            CommandController,
            customisations,
            *query_routes(),
            QueryController,
            NotificationController,
            health,
            live,
            console,  # the operators' page: it asks for the token, which every call it makes carries
        ],
        dependencies=container.http_dependencies(),
        plugins=[
            container.channels,
            AfterChannels(lifespan),  # it listens on them, so it starts after them and stops before
            problem_details_plugin(COMMAND_ERRORS),
            *([telemetry_plugin()] if tracing else []),
        ],
        state=State({DRAINING: container.draining}),
        request_max_body_size=MAX_BODY,
        cors_config=cors(settings),
        compression_config=CompressionConfig(
            backend="gzip",
            minimum_size=COMPRESSED_FROM,
            gzip_compress_level=5,  # most of 9's gain for a fraction of its CPU
            exclude_opt_key=NOT_COMPRESSED,
        ),
        logging_config=None,  # core.telemetry.configure_logging's JSON lines, not Litestar's own
        openapi_config=OpenAPIConfig(
            title="ERP",
            version="0.1.0",
            description=DESCRIPTION,
            render_plugins=[*pages, document],
            components=Components(security_schemes=SECURITY_SCHEMES),
        ),
    )


def serve_app() -> Litestar:
    """The factory for each of `erp api --workers N`'s processes: structured logs, then the app."""
    configure_logging()
    return create_app()
