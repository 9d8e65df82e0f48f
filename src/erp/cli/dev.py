"""`erp dev`: everything for local work in one process, with a demo account and curl lines to try."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from core.settings import Settings
from core.stopping import STOP_SIGNALS
from erp.cli.common import console, require_services, running
from erp.cli.migrate import migrate
from erp.cli.serve import api_server

TEMPORAL_UI_PORT = 8233


def dev(
    temporal_ui: Annotated[
        bool, typer.Option("--temporal-ui/--no-temporal-ui", help="the Temporal dev server's web UI on :8233")
    ] = True,
) -> None:
    """Start everything for local work: Postgres, Redis and Temporal (embedded or dev servers, if none
    answers), migrations, worker and API."""
    from core.telemetry import configure_logging, configure_telemetry
    from erp.devserver import answers, start_temporal
    from erp.embedded import local_services

    configure_logging()
    configure_telemetry("erp-dev")
    _interrupt_on_signals()  # until the API's loop takes them over: stop what started so far
    with contextlib.ExitStack() as stack:  # what it started is stopped in reverse order, however it ends
        # Postgres and Redis: the machine's if they answer (or the configured ones), else embedded.
        try:
            stack.enter_context(local_services(Path(".erp"), lambda line: console.print(line, markup=False)))
            settings = Settings()
            require_services(settings, command="erp dev")
            if not answers(settings.temporal_address):
                Path(".erp").mkdir(exist_ok=True)
                ui = f"its UI on http://127.0.0.1:{TEMPORAL_UI_PORT}" if temporal_ui else "no UI"
                console.print(f"starting a Temporal dev server on {settings.temporal_address} ({ui})")
                temporal = start_temporal(
                    settings.temporal_address,
                    ui_port=TEMPORAL_UI_PORT if temporal_ui else None,
                    db_file=".erp/temporal.db",
                )
                stack.callback(_stop, temporal)
        except typer.Exit:  # a RuntimeError too, in click; said already
            raise
        except RuntimeError as error:  # a server that would not start says why, in one line
            typer.echo(f"erp dev: {error}", err=True)
            raise typer.Exit(1) from None
        migrate()
        _serve(settings)


def _interrupt_on_signals() -> None:
    """SIGTERM and a hang-up raise KeyboardInterrupt as Ctrl-C does, so the servers `dev` started
    are stopped rather than left running (Python's default for them ends the process at once)."""

    def interrupt(signal_number: int, frame: object) -> None:
        raise KeyboardInterrupt

    for signal_number in STOP_SIGNALS:
        signal.signal(signal_number, interrupt)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _serve(settings: Settings) -> None:
    """The worker and the API in this process, until a signal stops them (the API first)."""
    from erp.worker import run_worker

    async def main() -> None:
        stop = asyncio.Event()
        server = api_server(settings, capture_signals=False)
        loop = asyncio.get_running_loop()
        for signal_number in STOP_SIGNALS:  # Ctrl-C, SIGTERM or a hang-up: stop in order
            loop.add_signal_handler(signal_number, setattr, server, "should_exit", True)
        worker_task = asyncio.create_task(run_worker(settings, stop))
        api_task = asyncio.create_task(server.serve())
        try:
            while not server.started:
                if api_task.done() or worker_task.done():
                    return
                await asyncio.sleep(0.1)
            _print_demo(settings, await _demo_account(settings))
            await asyncio.wait([api_task, worker_task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            server.should_exit = True
            await api_task
            stop.set()
            await worker_task

    asyncio.run(main())
    _interrupt_on_signals()  # the loop's handlers went with it; the servers are still to stop


async def _demo_account(settings: Settings) -> str:
    """An API key of the account named Demo, opened the first time (onboarded again if unfinished)."""
    async with running(settings) as container:
        demo = next((a for a in await container.catalog.list() if a.name == "Demo"), None)
        if demo is None:
            _, api_key, _ = await container.onboarding.open("Demo")
            return api_key
        await container.onboarding.rejoin(demo)
        return await container.catalog.issue_key(demo.account_id)


def _print_demo(settings: Settings, api_key: str) -> None:
    base = f"http://{settings.http_host}:{settings.http_port}"
    order_id = "0b81b458-7671-4e9b-844b-9934255f5406"
    console.print(f"\n[bold]ERP API on {base}[/]  (OpenAPI: {base}/schema/openapi.json)")
    console.print(f"demo account API key: [bold]{api_key}[/]")
    console.print(f"operator console: {base}/console (it asks for ERP_OPERATOR_TOKEN)\n", markup=False)
    console.print("# place an order (the seed's PlaceOrderCommand):", markup=False)
    console.print(
        f"curl -s -X POST {base}/commands/PlaceOrder -H 'Authorization: Bearer {api_key}' "
        f"-H 'Content-Type: application/json' -H 'Idempotency-Key: demo-1' "
        f'-d \'{{"OrderId": "{order_id}", "CustomerName": "Linus Torvalds", '
        f'"OrderLines": [{{"ProductCode": "KB-1", "Quantity": 2, "UnitPrice": "10.00"}}]}}\'',
        markup=False,
        soft_wrap=True,
    )
    console.print("# read it back, waiting until the read model has it:", markup=False)
    console.print(
        f"curl -s '{base}/queries/GetOrders?CustomerName=Linus%20Torvalds&ConsistentWith=Order:1' "
        f"-H 'Authorization: Bearer {api_key}'",
        markup=False,
        soft_wrap=True,
    )
    console.print("# watch notifications:", markup=False)
    console.print(
        f"curl -sN {base}/notifications -H 'Authorization: Bearer {api_key}'",
        markup=False,
        soft_wrap=True,
    )
