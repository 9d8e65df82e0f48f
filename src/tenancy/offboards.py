"""Offboarding an account (its keys revoked, its events exported, every row of it removed), the use
case: check the request, then run the steps of `tenancy.offboarding` as one durable workflow behind
`OffboardRunner` (`workflows.starters` runs it on Temporal)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from tenancy.catalog import Account, AccountCatalog, AccountStatus
from tenancy.moves import AccountMoves


class OffboardRefused(ValueError):
    """The offboarding cannot start: `status` says how to answer (404 or 409), the message why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class OffboardProgress:
    """Where an account's offboarding is."""

    workflow_id: str
    status: str
    """Running, Completed, Failed, ... (the workflow's)."""
    database: str
    phase: str
    events_exported: int = 0
    events_to_export: int = 0
    export: str | None = None
    """The file its events were written to (on the worker's machine), once they are."""
    rows_removed: int = 0
    error: str | None = None


class OffboardRunner(Protocol):
    """Runs an offboarding's steps durably (a workflow), one per account at a time."""

    async def start(self, account: Account) -> str:
        """Start offboarding the account; the workflow id. OffboardRefused (409) if an offboarding
        of the account is running."""

    async def progress(self, account_id: UUID) -> OffboardProgress | None:
        """The account's offboarding, or None if it was never offboarded."""


class AccountOffboards:
    """Starting offboardings (checked first), and following them."""

    def __init__(self, catalog: AccountCatalog, moves: AccountMoves, runner: OffboardRunner) -> None:
        self._catalog = catalog
        self._moves = moves
        self._runner = runner

    async def start(self, account_id: UUID) -> tuple[Account, str]:
        """Start offboarding the account: (the account, the workflow id).

        OffboardRefused: no such account (404); the account is onboarding, moving or offboarding
        already (409). An offboarding that stopped (failed or terminated) may be started again: it
        goes on where it stopped.
        """
        account = await self._catalog.get(account_id)
        if account is None:
            raise OffboardRefused(404, f"there is no account {account_id}")
        if account.status == AccountStatus.OFFBOARDING:
            progress = await self._runner.progress(account_id)
            if progress is None or progress.status == "Running":
                raise OffboardRefused(409, f"account {account_id} is offboarding already")
        elif account.status != AccountStatus.ACTIVE:
            raise OffboardRefused(409, f"account {account_id} is {account.status}; it can go once Active")
        move = await self._moves.progress(account_id)
        if move is not None and move.status == "Running":
            raise OffboardRefused(409, f"account {account_id} is moving; it can go once the move ends")
        return account, await self._runner.start(account)

    async def progress(self, account_id: UUID) -> OffboardProgress | None:
        return await self._runner.progress(account_id)
