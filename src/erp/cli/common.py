"""What the command groups share: the console, the composition root of one command's run, and the
--account option."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING
from uuid import UUID

import typer
from rich.console import Console

from core.settings import MAIN_DATABASE, Settings

if TYPE_CHECKING:
    from erp.bootstrap import Container

console = Console()


def running(settings: Settings) -> AbstractAsyncContextManager[Container]:
    """The composition root with small pools, started for one command and closed afterwards."""
    from erp.bootstrap import Container  # imported when a command runs, not for --help

    return Container(settings, min_pool=1, max_pool=4).running()


def require_services(settings: Settings, *, command: str, redis: bool = True) -> None:
    """Exit with status 1 and one line per service (its URL, never a password) when a tenant
    database or Redis the settings name does not answer: rather than a connection's traceback."""
    from erp.embedded import unreachable

    problems = [
        unreachable("PostgreSQL" if name == MAIN_DATABASE else f"PostgreSQL (database {name})", url, 5432)
        for name, url in settings.databases.items()
    ]
    if redis:
        problems.append(unreachable("Redis", settings.redis_url, 6379))
    lines = [f"{command}: {problem}" for problem in problems if problem is not None]
    if lines:
        typer.echo("\n".join(lines), err=True)
        raise typer.Exit(1)


def account_option(value: str | None) -> UUID | None:
    """The --account option's AccountId (None when not given); BadParameter if it is not a UUID."""
    try:
        return UUID(value) if value else None
    except ValueError:
        raise typer.BadParameter(f"--account must be an AccountId (a UUID), got {value!r}") from None
