"""`erp projections ...`: each projection's status, rebuilds with a progress bar, and the events read
models refused (`parked`, `retry`, `skip`).

Both go through `workflows.operations.ProjectionOperations`, as the operator API does, so a
projection's status is computed in one place.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

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
            changed = " (model changed: rebuild)" if s.shape_changed else ""
            console.print(
                f"{s.name:16} {s.database:10} v{s.version}{changed}"
                f"  head {s.head:>10}  position {s.position:>10}  behind {s.events_behind:>8}  "
                f"parked {s.parked:>4} (+{s.held} held)  pipeline {s.pipeline}",
                soft_wrap=True,
            )
            if s.building is not None:
                b = s.building
                console.print(
                    f"{'':16} {'':10} building v{b.version}: position {b.position:>10} of {b.head:>10}",
                    soft_wrap=True,
                )
            if s.retired:
                console.print(f"{'':16} {'':10} retired {', '.join(f'v{v}' for v in s.retired)}")
        builds = {s.name: s.build for s in found if s.build is not None}
        for name, build in builds.items():
            console.print(
                f"{name:16} last build {build.workflow_id}: {build.status}, {build.phase}"
                + (f" ({build.error})" if build.error else ""),
                soft_wrap=True,
                markup=False,
            )

    asyncio.run(main())


@app.command("rebuild")
def projections_rebuild(
    name: str,
    account: Annotated[
        str | None, typer.Option("--account", help="only this AccountId, replayed in place")
    ] = None,
) -> None:
    """Build a new version of a projection beside the live one, and switch queries to it once it has
    caught up, showing its progress (--account: replay one account's read model in place)."""
    from queries.registry import PROJECTIONS
    from tenancy.catalog import UnknownAccount
    from workflows.operations import ProjectionOperations, UnknownProjection
    from workflows.starters import BuildRefused

    try:
        ProjectionOperations.projection(name)
    except UnknownProjection:
        raise typer.BadParameter(f"unknown projection {name!r}; known: {', '.join(PROJECTIONS)}") from None
    account_id = account_option(account)
    settings = Settings()

    async def main() -> None:
        async with running(settings) as container:
            if account_id is None:
                try:
                    workflow_id = await container.projections.build(name)
                except BuildRefused as error:
                    console.print(str(error), markup=False)
                    raise typer.Exit(1) from None
                await _follow_build(name, container.projections, workflow_id)
                return
            try:
                handle = await container.projections.rebuild(name, account_id)
            except UnknownAccount as error:
                raise typer.BadParameter(str(error)) from None
            total = await container.projections.events(name, account_id)
            await _follow_rebuild(name, container.projections, handle, total)

    started = time.monotonic()
    asyncio.run(main())
    console.print(f"took {time.monotonic() - started:.1f} s")


@app.command("abort")
def projections_abort(name: str) -> None:
    """Abort the running build of a projection's new version: it is dropped, nothing else changes."""
    from workflows.operations import UnknownProjection
    from workflows.starters import BuildRefused

    settings = Settings()

    async def main() -> None:
        async with running(settings) as container:
            try:
                workflow_id = await container.projections.abort(name)
            except (UnknownProjection, BuildRefused) as error:
                console.print(str(error), markup=False)
                raise typer.Exit(1) from None
        console.print(f"aborting {workflow_id}: its new version is dropped")

    asyncio.run(main())


def _events_bar() -> Progress:
    """A progress bar of events (replayed, of how many), with the time taken."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} events"),
        TimeElapsedColumn(),
        console=console,
    )


async def _follow_build(name: str, projections: ProjectionOperations, workflow_id: str) -> None:
    """A progress bar over the events replayed into the new version (from its checkpoints, which
    each chunk moves as it commits), until it is switched in, or the build ends otherwise."""
    console.print(f"workflow {workflow_id}")
    with _events_bar() as progress:
        task = progress.add_task(f"building {name}", total=None)
        while True:
            seen = await projections.builds.seen(name)
            building = await projections.building(name)
            if building is not None:
                progress.update(task, total=building.head, completed=building.position)
            if seen is not None:
                progress.update(task, description=f"{name}: {seen.phase}")
                if seen.status != "Running" or seen.phase.startswith("done"):
                    break
            await asyncio.sleep(0.5)
    if seen.phase == "aborted":
        console.print(f"build of {name} aborted: its new version was dropped, the live one stays")
        raise typer.Exit(1)
    if seen.status != "Running" and not seen.phase.startswith("done"):
        console.print(f"build {seen.status.lower()}: {seen.phase} {seen.error or ''}", markup=False)
        raise typer.Exit(1)
    switched = ", ".join(f"{d} v{v}" for d, v in seen.versions.items())
    console.print(f"switched {name} to {switched}; the retired version is dropped after the grace period")


async def _follow_rebuild(name: str, projections: ProjectionOperations, handle: Rebuild, total: int) -> None:
    """A progress bar over the events replayed (from the activity's heartbeats) until the workflow ends.

    The rebuilt positions are committed only at the end of each account's rebuild, so its
    heartbeats, not the checkpoints, say how far it is.
    """
    console.print(f"workflow {handle.id}")
    result_task = asyncio.create_task(handle.result())
    with _events_bar() as progress:
        task = progress.add_task(f"rebuilding {name}", total=total or None)
        while not result_task.done():
            beat = await projections.progress(handle)
            if beat is not None:
                progress.update(task, total=max(total, beat.replayed), completed=beat.replayed)
            await asyncio.sleep(0.2)
        result = result_task.result()
        progress.update(task, total=result.events_applied, completed=result.events_applied)
    console.print(f"rebuilt {name}: {result.events_applied} events in {result.batches} batches")


@app.command("parked")
def projections_parked(
    projection: Annotated[str | None, typer.Option("--projection", help="only this projection's")] = None,
    account: Annotated[str | None, typer.Option("--account", help="only this AccountId")] = None,
) -> None:
    """The events read models refused, each with its reason, and the later events of their streams
    held behind them (at most 1,000)."""
    from tenancy.catalog import UnknownAccount
    from workflows.operations import UnknownProjection

    account_id = account_option(account)
    settings = Settings()

    async def main() -> None:
        async with running(settings) as container:
            try:
                found = await container.projections.parked(projection, account_id)
            except (UnknownProjection, UnknownAccount) as error:
                raise typer.BadParameter(str(error)) from None
        if not found:
            console.print("nothing is parked")
        for p in found:
            what = p.reason if p.held_behind is None else f"held behind #{p.held_behind}"
            console.print(
                f"{p.projection:16} {p.account_id} {p.stream_id} #{p.sequence_number} {p.event}: {what}",
                soft_wrap=True,
                markup=False,
            )

    asyncio.run(main())


@app.command("retry")
def projections_retry(name: str, account: str, stream: str) -> None:
    """Apply one stream's parked events again, in order, once the cause is fixed: the refused event
    first, then those held behind it, up to the first the read model still refuses."""
    _release(name, account, stream, skip=False)


@app.command("skip")
def projections_skip(name: str, account: str, stream: str) -> None:
    """Skip one stream's refused event (its read model never shows it) and apply those held behind it."""
    _release(name, account, stream, skip=True)


def _release(name: str, account: str, stream: str, *, skip: bool) -> None:
    from queries.projector.parking import NothingParked
    from tenancy.catalog import UnknownAccount
    from workflows.operations import UnknownProjection

    try:
        account_id = UUID(account)
    except ValueError:
        raise typer.BadParameter(f"ACCOUNT must be an AccountId (a UUID), got {account!r}") from None
    settings = Settings()

    async def main() -> None:
        async with running(settings) as container:
            try:
                released = await container.projections.release(name, account_id, stream, skip=skip)
            except (UnknownProjection, UnknownAccount, NothingParked) as error:
                raise typer.BadParameter(str(error)) from None
        console.print(
            f"{stream}: {released.applied} applied, {released.skipped} skipped, "
            f"{released.still_parked} still parked",
            markup=False,
        )
        if released.reason is not None:
            console.print(f"refused again: {released.reason}", markup=False)
            raise typer.Exit(1)

    asyncio.run(main())
