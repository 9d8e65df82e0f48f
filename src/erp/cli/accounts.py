"""`erp accounts ...`: tenant accounts, one at a time or in bulk."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Protocol, TypeVar
from uuid import UUID

import msgspec
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from core.settings import Settings
from erp.cli.common import account_option, console, running

if TYPE_CHECKING:
    from erp.bootstrap import Container
    from tenancy.onboarding import ImportedAccount

app = typer.Typer(help="Tenant accounts.", no_args_is_help=True)
errors = Console(stderr=True)


@app.command("create")
def accounts_create(name: str) -> None:
    """Onboard an account (needs a running worker) and print its API key."""
    settings = Settings()

    async def main() -> None:
        async with running(settings) as container:
            account, api_key, status = await container.onboarding.open(name)
        console.print(
            f"AccountId {account.account_id}\nApiKey    {api_key}\nStatus    {status}\n"
            f"Database  {account.database}"
        )

    asyncio.run(main())


@app.command("import")
def accounts_import(
    file: Annotated[str, typer.Argument(help="one account name a line, or JSON lines; - for stdin")],
    out: Annotated[
        Path | None,
        typer.Option(help="write the new accounts and keys here (JSON lines, mode 0600), not to stdout"),
    ] = None,
) -> None:
    """Onboard every account a file names, as one workflow (needs a running worker), with a progress
    bar; print (or write) each new AccountId and API key once, as JSON lines.

    A bad line is reported by its number and opens nobody. With --out, the keys are on disk before
    the accounts are committed, so none is opened whose key was not kept.
    """
    from tenancy.imports import BadImport, parse_import

    data = sys.stdin.buffer.read() if file == "-" else _read(Path(file))
    try:
        entries = parse_import(data)
    except BadImport as error:
        for line, detail in error.problems:
            errors.print(f"{file}:{line}: {detail}" if line else f"{file}: {detail}", markup=False)
        errors.print(f"{len(error.problems)} bad line(s); no account was opened")
        raise typer.Exit(2) from None
    if out is not None and out.exists():
        raise typer.BadParameter(f"{out} exists; the keys go to a new file only", param_hint="--out")
    settings = Settings()

    async def main() -> None:
        async with running(settings) as container:
            started = time.perf_counter()
            keys = KeyFile(out) if out is not None else None
            try:
                keep = keys.keep if keys is not None else None
                imported = await container.onboarding.import_accounts(entries, keep)
            except BaseException:
                if keys is not None:
                    await asyncio.shield(keys.discard_unless_opened(container))
                raise
            if out is None:
                for account in imported.accounts:
                    sys.stdout.write(_line(account))
                sys.stdout.flush()
            await _follow(container, imported.import_id, len(entries))
            elapsed = time.perf_counter() - started
        where = f"; keys in {out}" if out else ""
        errors.print(
            f"{len(entries):,} accounts onboarded in {elapsed:.1f} s ({len(entries) / elapsed:,.0f}/s), "
            f"import {imported.import_id}{where}"
        )

    asyncio.run(main())


@app.command("move")
def accounts_move(
    account: Annotated[str, typer.Argument(help="the AccountId")],
    to: Annotated[str, typer.Option("--to", help="the tenant database to move it to")],
) -> None:
    """Move an account to another tenant database (a workflow; needs a running worker), with a
    progress bar. Its commands are answered 503 for the few seconds of the switch."""
    from tenancy.moves import MoveRefused

    account_id = account_option(account)
    assert account_id is not None
    settings = Settings()

    async def main() -> None:
        async with running(settings) as container:
            try:
                moving, workflow_id = await container.moves.start(account_id, to)
            except MoveRefused as refused:
                raise typer.BadParameter(str(refused)) from None
            errors.print(f"moving {account_id} from {moving.database} to {to} (workflow {workflow_id})")
            progress = await _follow_workflow(
                lambda: container.moves.progress(account_id),
                lambda p: (p.events_copied, p.events_to_copy),
            )
        if progress.status != "Completed":
            errors.print(f"the move ended {progress.status}: {progress.error or progress.phase}")
            raise typer.Exit(1)
        console.print(
            f"account {account_id} lives in {to} now; its writes waited "
            f"{progress.fenced_seconds or 0:.1f} s during the switch"
        )

    asyncio.run(main())


@app.command("offboard")
def accounts_offboard(account: Annotated[str, typer.Argument(help="the AccountId")]) -> None:
    """Offboard an account (a workflow; needs a running worker), with a progress bar: its API keys
    are revoked and its writes refused at once, its events exported to ERP_EXPORT_DIR on the
    worker's machine, and then every row of it is removed. Other accounts are not held up."""
    from tenancy.offboards import OffboardRefused

    account_id = _account_argument(account)
    settings = Settings()

    async def main() -> None:
        async with running(settings) as container:
            try:
                leaving, workflow_id = await container.offboards.start(account_id)
            except OffboardRefused as refused:
                raise typer.BadParameter(str(refused), param_hint="ACCOUNT") from None
            errors.print(f"offboarding {account_id} from {leaving.database} (workflow {workflow_id})")
            progress = await _follow_workflow(
                lambda: container.offboards.progress(account_id),
                lambda p: (p.events_exported, p.events_to_export),
            )
        if progress.status != "Completed":
            errors.print(f"the offboarding ended {progress.status}: {progress.error or progress.phase}")
            raise typer.Exit(1)
        console.print(
            f"account {account_id} is offboarded: {progress.rows_removed:,} rows removed; its "
            f"{progress.events_exported:,} events are in {progress.export} (on the worker's machine)"
        )

    asyncio.run(main())


@app.command("export")
def accounts_export(
    account: Annotated[str, typer.Argument(help="the AccountId")],
    out: Annotated[
        Path | None,
        typer.Option(help="write the events here (a new file, mode 0600), not to stdout"),
    ] = None,
) -> None:
    """Write the account's events as JSON lines, upcast to today's shapes (the events committed when
    the export starts), with a progress bar on stderr. Needs the database, not the worker."""
    from commands.store.export import export_events, export_line, plan_export

    account_id = _account_argument(account)
    if out is not None and out.exists():
        raise typer.BadParameter(f"{out} exists; an export goes to a new file only", param_hint="--out")
    settings = Settings()

    async def main() -> int:
        async with running(settings) as container:
            found = await container.catalog.get(account_id)
            if found is None:
                raise typer.BadParameter(f"there is no account {account_id}", param_hint="ACCOUNT")
            pool = container.databases.pool(found.database)
            plan = await plan_export(pool, account_id)
            descriptor = (
                os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600) if out is not None else None
            )
            sink = os.fdopen(descriptor, "wb") if descriptor is not None else sys.stdout.buffer
            written = 0
            columns = (TextColumn("exporting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            try:
                with Progress(*columns, console=errors, disable=not errors.is_terminal) as bar:
                    task = bar.add_task("export", total=plan.events)
                    async for events in export_events(pool, container.store.feed, plan):
                        sink.write(b"".join(map(export_line, events)))
                        written += len(events)
                        bar.update(task, completed=written)
                sink.flush()
                if descriptor is not None:
                    os.fsync(sink.fileno())
            finally:
                if sink is not sys.stdout.buffer:
                    sink.close()
            return written

    written = asyncio.run(main())
    where = f" to {out}" if out is not None else ""
    errors.print(f"{written:,} events of account {account_id} exported{where}")


def _account_argument(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise typer.BadParameter(f"ACCOUNT must be an AccountId (a UUID), got {value!r}") from None


class _Followed(Protocol):
    """What an operator's workflow says of itself: whether it runs, and where it is."""

    @property
    def status(self) -> str: ...
    @property
    def phase(self) -> str: ...


F = TypeVar("F", bound=_Followed)


async def _follow_workflow(
    progress: Callable[[], Awaitable[F | None]], counts: Callable[[F], tuple[int, int]]
) -> F:
    """A progress bar of an operator's workflow (a move, an offboarding) until it ends: its phase,
    and `counts` (done, to do) of what it reports; what it reported last."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=errors) as bar:
        task = bar.add_task("starting", total=None)
        while True:
            seen = await progress()
            assert seen is not None  # it was started
            done, total = counts(seen)
            bar.update(task, description=seen.phase, completed=done, total=total or None)
            if seen.status != "Running":
                return seen
            await asyncio.sleep(0.5)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise typer.BadParameter(f"cannot read {path}: {error.strerror}", param_hint="FILE") from None


def _line(account: ImportedAccount) -> str:
    return (
        msgspec.json.encode(
            {
                "Line": account.entry.line,
                "AccountId": str(account.account.account_id),
                "Name": account.account.name,
                "ApiKey": account.api_key,
            }
        ).decode()
        + "\n"
    )


class KeyFile:
    """Where --out keeps an import's keys: written to a new file (0600) and synced before the
    accounts commit (`keep`), and removed only if it is known that they never did."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._first: UUID | None = None

    def keep(self, accounts: list[ImportedAccount]) -> None:
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            self._first = accounts[0].account.account_id
            handle.write("".join(map(_line, accounts)).encode())
            handle.flush()
            os.fsync(handle.fileno())

    async def discard_unless_opened(self, container: Container) -> None:
        """After a failure: remove the file if its accounts were not opened; keep it (and say so)
        if they were, or if that cannot be told now."""
        if self._first is None:
            return
        try:
            opened = await container.catalog.get(self._first) is not None
        except Exception:
            opened = True  # cannot tell: a key file too many is better than a key lost
        if opened:
            errors.print(f"the import may have been opened: its keys are kept in {self.path}")
        else:
            self.path.unlink(missing_ok=True)


async def _follow(container: Container, import_id: UUID, total: int) -> None:
    """A progress bar of the import's accounts that are Active, until all are (read from the catalog,
    so it works while Temporal is away; the worker's sweep starts a workflow that could not be)."""
    columns = (TextColumn("onboarding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=errors) as progress:
        task = progress.add_task("import", total=total)
        while True:
            state = await container.catalog.import_state(import_id)
            assert state is not None
            progress.update(task, completed=state.active)
            if state.finished:
                return
            await asyncio.sleep(0.2)
