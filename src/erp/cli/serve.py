"""`erp api` and `erp worker`: the two long-running processes."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Annotated, Any

import typer
import uvicorn
import uvloop

from core.settings import Settings
from erp.cli.common import require_services
from erp.http_protocol import ProblemHttpProtocol

SERVED_WITH: dict[str, Any] = {
    "log_level": "warning",
    "log_config": None,  # uvicorn's loggers propagate to the JSON handler
    "access_log": False,
    "http": ProblemHttpProtocol,  # what uvicorn cannot parse is a problem+json 400 too
}
"""uvicorn's options for the API, one process or many (the loop is uvicorn's default, uvloop when
installed). `erp bench`'s bare app (`erp.bench.bare`) is served with them too, so that the two differ
only in what the app does."""


class DrainingServer(uvicorn.Server):
    """A uvicorn server that, as it begins to stop, ends the app's notification streams: uvicorn
    waits for every response to finish, and a stream never does on its own (one open
    /notifications held `erp dev` up until the shutdown timeout)."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        from erp.app import begin_draining

        begin_draining(self.config.loaded_app)
        await super().shutdown(sockets)


class _SignalFreeServer(DrainingServer):
    """A uvicorn server that leaves signals to its caller (`erp dev` stops the API, then the worker,
    then Temporal; uvicorn's own handling re-raises the signal afterwards, killing the process
    before the rest has stopped)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def api_server(settings: Settings, *, capture_signals: bool = True) -> uvicorn.Server:
    """A uvicorn server for the app on ERP_HTTP_HOST:ERP_HTTP_PORT."""
    from erp.app import create_app

    config = uvicorn.Config(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        timeout_graceful_shutdown=settings.shutdown_timeout,
        **SERVED_WITH,
    )
    return DrainingServer(config) if capture_signals else _SignalFreeServer(config)


def api(
    workers: Annotated[int, typer.Option(help="API processes sharing the port")] = 1,
) -> None:
    """Serve the HTTP API on ERP_HTTP_HOST:ERP_HTTP_PORT."""
    from core.telemetry import configure_logging

    configure_logging()
    settings = Settings()
    try:
        settings.check_exposure()
    except ValueError as error:
        typer.echo(f"erp api: {error}", err=True)
        raise typer.Exit(2) from None
    require_services(settings, command="erp api")
    if workers == 1:
        api_server(settings).run()
        return
    uvicorn.run(
        "erp.app:serve_app",
        factory=True,
        host=settings.http_host,
        port=settings.http_port,
        workers=workers,
        timeout_graceful_shutdown=settings.shutdown_timeout,  # uvicorn's own workers: streams end then
        **SERVED_WITH,
    )


def worker() -> None:
    """Run the Temporal worker: projector pipelines, rebuilds and onboarding."""
    from core.telemetry import configure_logging, configure_telemetry
    from erp.worker import run_worker

    configure_logging()
    configure_telemetry("erp-worker")
    settings = Settings()
    require_services(settings, command="erp worker")
    uvloop.run(run_worker(settings))
