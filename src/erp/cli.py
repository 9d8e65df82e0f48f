"""The `erp` command line: dev, api, worker, migrate, accounts, projections and bench."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
import uvicorn
import uvloop
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from temporalio.client import Client, WorkflowHandle

from erp.settings import Settings
from erp.stopping import STOP_SIGNALS
from queries.projector import Projector
from tenancy.accounts import AccountCatalog
from tenancy.routing import Databases
from workflows.messages import RebuildResult

app = typer.Typer(help="A multi-tenant, event-sourced ERP backend.", no_args_is_help=True)
accounts_app = typer.Typer(help="Tenant accounts.", no_args_is_help=True)
projections_app = typer.Typer(help="Read-model projections.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(projections_app, name="projections")
console = Console()


class _SignalFreeServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its caller (`erp dev` stops the API, then the worker,
    then Temporal; uvicorn's own handling re-raises the signal afterwards, killing the process
    before the rest has stopped)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _api_server(settings: Settings, *, capture_signals: bool = True) -> uvicorn.Server:
    from erp.app import create_app

    config = uvicorn.Config(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_level="warning",
        log_config=None,  # uvicorn's loggers propagate to the JSON handler
        access_log=False,
    )
    return uvicorn.Server(config) if capture_signals else _SignalFreeServer(config)


@app.command()
def migrate() -> None:
    """Create the database if needed and apply every migration."""
    from erp.devserver import create_database
    from erp.migrate import upgrade

    settings = Settings()
    for name, url in settings.databases.items():
        if asyncio.run(create_database(url)):
            console.print(f"created database {name}: {url}")
        upgrade(settings.for_database(name))
        console.print(f"migrations applied to {name}")


@app.command()
def api(
    workers: Annotated[int, typer.Option(help="API processes sharing the port")] = 1,
) -> None:
    """Serve the HTTP API on ERP_HTTP_HOST:ERP_HTTP_PORT."""
    from erp.telemetry import configure_logging

    configure_logging()
    if workers == 1:
        _api_server(Settings()).run()
        return
    settings = Settings()
    uvicorn.run(
        "erp.app:serve_app",
        factory=True,
        host=settings.http_host,
        port=settings.http_port,
        workers=workers,
        log_level="warning",
        log_config=None,
        access_log=False,
    )


@app.command()
def worker() -> None:
    """Run the Temporal worker: projector pipelines, rebuilds and onboarding."""
    from erp.telemetry import configure_logging, configure_telemetry
    from workflows.worker import run_worker

    configure_logging()
    configure_telemetry("erp-worker")
    uvloop.run(run_worker(Settings()))


@app.command()
def dev() -> None:
    """Start everything for local work: Temporal (if none answers), migrations, worker and API."""
    from erp.devserver import answers, start_temporal
    from erp.telemetry import configure_logging, configure_telemetry
    from workflows.worker import run_worker

    configure_logging()
    configure_telemetry("erp-dev")
    settings = Settings()
    temporal = None
    if not answers(settings.temporal_address):
        Path(".erp").mkdir(exist_ok=True)
        console.print(f"starting a Temporal dev server on {settings.temporal_address} (UI :8233)")
        temporal = start_temporal(settings.temporal_address, ui_port=8233, db_file=".erp/temporal.db")
    migrate()

    async def main() -> None:
        stop = asyncio.Event()
        server = _api_server(settings, capture_signals=False)
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

    try:
        asyncio.run(main())
    finally:
        if temporal is not None:
            temporal.terminate()


@asynccontextmanager
async def _catalog(settings: Settings) -> AsyncIterator[tuple[AccountCatalog, Databases]]:
    """The account catalog and the tenant databases, closed afterwards."""
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(settings.sqlalchemy_url)
    databases = await Databases.open(settings, min_size=1, max_size=4)
    try:
        yield AccountCatalog(engine), databases
    finally:
        await databases.close()
        await engine.dispose()


async def _demo_account(settings: Settings) -> str:
    from erp.temporal import connect_temporal
    from workflows.starters import onboard_account, open_account

    async with _catalog(settings) as (catalog, databases):
        client = await connect_temporal(settings)
        demo = next((a for a in await catalog.list() if a.name == "Demo"), None)
        if demo is None:
            _, api_key, _ = await open_account(
                catalog, databases.main, databases.names(), client, settings.task_queue, "Demo"
            )
            return api_key
        await onboard_account(client, settings.task_queue, demo)
        return await catalog.issue_key(demo.account_id)


def _print_demo(settings: Settings, api_key: str) -> None:
    base = f"http://{settings.http_host}:{settings.http_port}"
    order_id = "0b81b458-7671-4e9b-844b-9934255f5406"
    console.print(f"\n[bold]ERP API on {base}[/]  (OpenAPI: {base}/schema/openapi.json)")
    console.print(f"demo account API key: [bold]{api_key}[/]\n")
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


@accounts_app.command("create")
def accounts_create(name: str) -> None:
    """Onboard an account (needs a running worker) and print its API key."""
    from erp.temporal import connect_temporal
    from workflows.starters import open_account

    settings = Settings()

    async def main() -> None:
        async with _catalog(settings) as (catalog, databases):
            client = await connect_temporal(settings)
            account, api_key, status = await open_account(
                catalog, databases.main, databases.names(), client, settings.task_queue, name
            )
        console.print(
            f"AccountId {account.account_id}\nApiKey    {api_key}\nStatus    {status}\n"
            f"Database  {account.database}"
        )

    asyncio.run(main())


@projections_app.command("status")
def projections_status(
    account: Annotated[str | None, typer.Option("--account", help="only this AccountId")] = None,
) -> None:
    """Each projection in each tenant database with its head, position and lag (or one account's)."""
    from queries.projector import Projector
    from queries.registry import PROJECTIONS

    account_id = _account_option(account)
    settings = Settings()

    async def main() -> None:
        async with _catalog(settings) as (catalog, databases):
            names = await _databases_of(catalog, databases, account_id)
            for name, projection in PROJECTIONS.items():
                for database in names:
                    lag = await Projector(databases.pool(database), projection).lag(account_id)
                    console.print(
                        f"{name:16} {database:10} head {lag.head:>10}  position {lag.position:>10}  "
                        f"behind {lag.events_behind:>8}"
                    )

    asyncio.run(main())


async def _databases_of(catalog: AccountCatalog, databases: Databases, account_id: UUID | None) -> list[str]:
    """Every tenant database, or the one the account lives in."""
    if account_id is None:
        return databases.names()
    found = await catalog.get(account_id)
    if found is None:
        raise typer.BadParameter(f"there is no account {account_id}")
    return [found.database]


def _account_option(value: str | None) -> UUID | None:
    try:
        return UUID(value) if value else None
    except ValueError:
        raise typer.BadParameter(f"--account must be an AccountId (a UUID), got {value!r}") from None


@projections_app.command("rebuild")
def projections_rebuild(
    name: str,
    account: Annotated[str | None, typer.Option("--account", help="only this AccountId")] = None,
) -> None:
    """Rebuild a projection as a workflow, showing its progress."""
    from erp.temporal import connect_temporal
    from queries.registry import PROJECTIONS
    from workflows.starters import start_rebuild

    if name not in PROJECTIONS:
        raise typer.BadParameter(f"unknown projection {name!r}; known: {', '.join(PROJECTIONS)}")
    account_id = _account_option(account)
    settings = Settings()

    async def main() -> None:
        async with _catalog(settings) as (catalog, databases):
            names = await _databases_of(catalog, databases, account_id)
            client = await connect_temporal(settings)
            handle = await start_rebuild(client, settings.task_queue, name, names, account_id)
            projectors = [Projector(databases.pool(n), PROJECTIONS[name]) for n in names]
            total = sum([(await projector.lag(account_id)).head for projector in projectors])
            await _follow_rebuild(name, client, handle, total)

    started = time.monotonic()
    asyncio.run(main())
    console.print(f"took {time.monotonic() - started:.1f} s")


async def _follow_rebuild(
    name: str, client: Client, handle: WorkflowHandle[Any, RebuildResult], total: int
) -> None:
    """A progress bar over the events replayed (from the activity's heartbeats) until the workflow ends.

    The rebuilt positions are committed only at the end of each account's rebuild, so its
    heartbeats, not the checkpoints, say how far it is.
    """
    from workflows.starters import rebuild_progress

    console.print(f"workflow {handle.id}")
    result_task = asyncio.create_task(handle.result())
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} events"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"rebuilding {name}", total=total or None)
        while not result_task.done():
            beat = await rebuild_progress(client, handle)
            if beat is not None:
                progress.update(task, total=max(total, beat.replayed), completed=beat.replayed)
            await asyncio.sleep(0.2)
        result = result_task.result()
        progress.update(task, total=result.events_applied, completed=result.events_applied)
    console.print(f"rebuilt {name}: {result.events_applied} events in {result.batches} batches")


@app.command()
def bench(
    seconds: Annotated[float, typer.Option(help="duration of each load phase")] = 10.0,
    accounts: Annotated[int, typer.Option(help="tenant accounts to spread load over")] = 100,
    json_path: Annotated[str | None, typer.Option("--json", help="also write the figures here")] = None,
    api_workers: Annotated[int, typer.Option(help="API processes")] = 1,
    model_scale: Annotated[
        bool, typer.Option("--model-scale", help="instead: load a model the seed's size and serve it")
    ] = False,
    soak: Annotated[
        float | None, typer.Option("--soak", help="instead: hold a mixed load for this many minutes")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="requests/s during --soak (default: half the mix's measured peak)")
    ] = None,
) -> None:
    """Measure HTTP commands/s, appended events/s and command -> notification latency."""
    from erp.bench import run_bench, run_soak
    from erp.stopping import stoppable

    try:
        if soak is not None:
            uvloop.run(stoppable(run_soak(soak, rate, accounts=accounts, json_path=json_path)))
        elif model_scale:
            from erp.bench_model import report_model_scale

            signal.signal(signal.SIGTERM, signal.default_int_handler)
            report_model_scale(json_path)
        else:
            work = run_bench(seconds=seconds, accounts=accounts, json_path=json_path, api_workers=api_workers)
            uvloop.run(stoppable(work))
    except (asyncio.CancelledError, KeyboardInterrupt):
        Console(stderr=True).print("bench stopped; its database and servers are gone")
        raise typer.Exit(130) from None
