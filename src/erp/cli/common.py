"""What the command groups share: the console, the composition root of one command's run, and the
--account option."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING
from uuid import UUID

import typer
from rich.console import Console

from core.settings import Settings

if TYPE_CHECKING:
    from erp.bootstrap import Container

console = Console()


def running(settings: Settings) -> AbstractAsyncContextManager[Container]:
    """The composition root with small pools, started for one command and closed afterwards."""
    from erp.bootstrap import Container  # imported when a command runs, not for --help

    return Container(settings, min_pool=1, max_pool=4).running()


def account_option(value: str | None) -> UUID | None:
    """The --account option's AccountId (None when not given); BadParameter if it is not a UUID."""
    try:
        return UUID(value) if value else None
    except ValueError:
        raise typer.BadParameter(f"--account must be an AccountId (a UUID), got {value!r}") from None
