"""`erp projections ...`: each projection's status, and rebuilds with a progress bar.

Both go through `workflows.operations.ProjectionOperations`, as the operator API does, so a
projection's status is computed in one place.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from core.settings import Settings
from erp.cli.common import account_option, console, running

if TYPE_CHECKING:
    from workflows.operations import ProjectionOperations, Rebuild

app = typer.Typer(help="Read-model projections.", no_args_is_help=True)


@app.command("status")
def projections_status(
    account: Annotated[str | None, typer.Option("--account", help="only this AccountId")] = None,
) -> None:
    """Each projection per tenant database: head, position, lag and pipeline (or one account's)."""
    from tenancy.catalog import UnknownAccount

    account_id = account_option(account)
    settings = Settings()

    async def main() -> None:
        async with running(settings) as container:
            try:
                found = await container.projections.status(account_id)
            except UnknownAccount as error:
                raise typer.BadParameter(str(error)) from None
        for s in found:
            console.print(
                f"{s.name:16} {s.database:10} head {s.head:>10}  position {s.position:>10}  "
                f"behind {s.events_behind:>8}  pipeline {s.pipeline}",
                soft_wrap=True,
            )

    asyncio.run(main())


@app.command("rebuild")
def projections_rebuild(
    name: str,
    account: Annotated[str | None, typer.Option("--account", help="only this AccountId")] = None,
) -> None:
    """Rebuild a projection as a workflow, showing its progress."""
    from queries.registry import PROJECTIONS
    from tenancy.catalog import UnknownAccount
    from workflows.operations import ProjectionOperations, UnknownProjection

    try:
        ProjectionOperations.projection(name)
    except UnknownProjection:
        raise typer.BadParameter(f"unknown projection {name!r}; known: {', '.join(PROJECTIONS)}") from None
    account_id = account_option(account)
    settings = Settings()

    async def main() -> None:
        async with running(settings) as container:
            try:
                handle = await container.projections.rebuild(name, account_id)
            except UnknownAccount as error:
                raise typer.BadParameter(str(error)) from None
            total = await container.projections.events(name, account_id)
            await _follow_rebuild(name, container.projections, handle, total)

    started = time.monotonic()
    asyncio.run(main())
    console.print(f"took {time.monotonic() - started:.1f} s")


async def _follow_rebuild(name: str, projections: ProjectionOperations, handle: Rebuild, total: int) -> None:
    """A progress bar over the events replayed (from the activity's heartbeats) until the workflow ends.

    The rebuilt positions are committed only at the end of each account's rebuild, so its
    heartbeats, not the checkpoints, say how far it is.
    """
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
            beat = await projections.progress(handle)
            if beat is not None:
                progress.update(task, total=max(total, beat.replayed), completed=beat.replayed)
            await asyncio.sleep(0.2)
        result = result_task.result()
        progress.update(task, total=result.events_applied, completed=result.events_applied)
    console.print(f"rebuilt {name}: {result.events_applied} events in {result.batches} batches")
