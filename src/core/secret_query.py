"""Query parameters that are credentials (a stream ticket: `GET /notifications?Ticket=…`, since a
browser's EventSource sends no headers) never reach a trace or a metric.

OpenTelemetry's ASGI instrumentation records the request's target and URL, query string included,
on the server span (`http.target`, `http.url`, `url.query`) and on the duration metric. The
middleware here shows it the query string with such values replaced by `REDACTED`, and gives the
app the real one while it runs. Nothing else of ours logs URLs (no access log: `erp.cli.serve`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.plugins.opentelemetry.middleware import OpenTelemetryInstrumentationMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

TICKET = "Ticket"
SECRET_PARAMETERS = frozenset({TICKET.lower()})
"""Names (compared in lower case) whose values are secrets."""
REDACTED = "REDACTED"
_REAL = "erp.real_query_string"


def scrubbed(query: bytes) -> bytes:
    """`query` with every secret parameter's value replaced (unchanged when it has none)."""
    if b"%" not in query and not any(name.encode() in query.lower() for name in SECRET_PARAMETERS):
        return query  # no secret's name, even percent-encoded
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    return urlencode(
        [(name, REDACTED if name.lower() in SECRET_PARAMETERS else value) for name, value in pairs]
    ).encode("latin-1")


class ScrubbedTelemetryMiddleware(OpenTelemetryInstrumentationMiddleware):
    """Litestar's OpenTelemetry middleware, blind to secret query parameters."""

    def __init__(self, app: ASGIApp, config: OpenTelemetryConfig) -> None:
        async def real(scope: Scope, receive: Receive, send: Send) -> None:
            shown = scope.get("query_string", b"")
            state: dict[str, Any] = scope  # type: ignore[assignment]
            if _REAL in state:
                scope["query_string"] = state[_REAL]
            try:
                await app(scope, receive, send)
            finally:
                scope["query_string"] = shown

        super().__init__(real, config)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string", b"")
        if scope["type"] in ("http", "websocket") and query:
            shown = scrubbed(query)
            if shown is not query:
                state: dict[str, Any] = scope  # type: ignore[assignment]
                state[_REAL] = query
                scope["query_string"] = shown
        await super().__call__(scope, receive, send)


def telemetry_plugin() -> OpenTelemetryPlugin:
    """The API's OpenTelemetry plugin, with the middleware above.

    Litestar 2.25's plugin builds its middleware from the stock class whatever the configuration's
    `middleware_class` says, unless `_middleware` is set (as Litestar itself sets it for a
    middleware passed in the app's list); tests/e2e/test_browsers.py fails if that changes.
    """
    config = OpenTelemetryConfig(middleware_class=ScrubbedTelemetryMiddleware)
    plugin = OpenTelemetryPlugin(config)
    plugin._middleware = config.middleware
    return plugin
