"""Moving an account to another tenant database (a big account to a server of its own), the use case:
check the request, then run the steps of `tenancy.moving` as one durable workflow behind
`MoveRunner` (`workflows.starters` runs it on Temporal)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from tenancy.catalog import Account, AccountCatalog, AccountStatus
from tenancy.routing import Databases


class MoveRefused(ValueError):
    """The move cannot start: `status` says how to answer (404, 409 or 422), the message why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class MoveProgress:
    """Where an account's latest move is."""

    workflow_id: str
    status: str
    """Running, Completed, Failed, ... (the workflow's)."""
    source: str
    target: str
    phase: str
    events_copied: int = 0
    events_to_copy: int = 0
    fenced_seconds: float | None = None
    """How long the account's writes were refused (once it has switched)."""
    error: str | None = None


class MoveRunner(Protocol):
    """Runs a move's steps durably (a workflow), one move per account at a time."""

    async def start(self, account: Account, target: str) -> str:
        """Start moving the account to `target`; the workflow id. MoveRefused (409) if a move of
        the account is running."""

    async def progress(self, account_id: UUID) -> MoveProgress | None:
        """The account's latest move, or None if it never moved."""


class AccountMoves:
    """Starting moves (checked first), and following them."""

    def __init__(self, catalog: AccountCatalog, databases: Databases, runner: MoveRunner) -> None:
        self._catalog = catalog
        self._databases = databases
        self._runner = runner

    async def start(self, account_id: UUID, target: str) -> tuple[Account, str]:
        """Start moving the account to the tenant database `target`: (the account, the workflow id).

        MoveRefused: no such account (404); no such database (422); the account is there already,
        still onboarding, or moving (409).
        """
        account = await self._catalog.get(account_id)
        if account is None:
            raise MoveRefused(404, f"there is no account {account_id}")
        known = self._databases.names()
        if target not in known:
            raise MoveRefused(
                422, f"To: there is no tenant database {target!r}; configured: {', '.join(known)}"
            )
        if account.database == target:
            raise MoveRefused(409, f"account {account_id} is in {target} already")
        if account.status != AccountStatus.ACTIVE:
            raise MoveRefused(409, f"account {account_id} is {account.status}; it can move once Active")
        return account, await self._runner.start(account, target)

    async def progress(self, account_id: UUID) -> MoveProgress | None:
        return await self._runner.progress(account_id)
