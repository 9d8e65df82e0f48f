"""Onboarding, the one use case: place new accounts, register them, activate them; one at a time or
in bulk.

Registering is one transaction (a bulk import's accounts and keys all or none); activating is a
durable workflow behind `OnboardingRunner` (`workflows.starters` runs it on Temporal): one per
account opened alone, one per import for accounts opened in bulk. Its steps are idempotent and
need no DDL (partitions are fixed, chosen by AccountId). An account whose workflow never started
(the engine unreachable right after registering) stays Onboarding until `resume` starts it again;
the worker calls that every 30 s.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol
from uuid import UUID

from tenancy.catalog import Account, AccountCatalog, AccountStatus, NewAccount
from tenancy.imports import Entry
from tenancy.routing import Databases, event_partition, place, place_many

log = logging.getLogger(__name__)

ONBOARD_WAIT = timedelta(seconds=15)
"""How long opening an account waits for onboarding before answering with Status Onboarding."""
IMPORT_CHUNK = 1000
"""Accounts an import's workflow activates per step."""


class OnboardingRunner(Protocol):
    """Runs onboarding durably (a workflow): once per account opened alone, once per import."""

    async def ensure_available(self) -> None:
        """Raise if onboarding cannot be started now, before anything is registered."""

    async def start(self, account: Account) -> None:
        """Start the account's onboarding, or join it while it runs."""

    async def run(self, account: Account, within: timedelta) -> str:
        """Start or join the account's onboarding and wait up to `within`; the account's status then."""

    async def start_import(self, import_id: UUID, accounts: int) -> str:
        """Start the import's onboarding, or join it while it runs; its workflow id."""

    async def wait_import(self, import_id: UUID, within: timedelta) -> bool:
        """Wait up to `within` for the import's onboarding; True if it finished."""


@dataclass(frozen=True, slots=True)
class ImportedAccount:
    entry: Entry
    account: Account
    api_key: str


@dataclass(frozen=True, slots=True)
class Imported:
    """A registered import: its accounts with their keys (shown once), and its workflow."""

    import_id: UUID
    workflow_id: str | None
    """None if it could not be started just now: the worker's sweep starts it."""
    accounts: list[ImportedAccount]


KeepKeys = Callable[[list[ImportedAccount]], None]
"""Called with an import's accounts and keys before they commit; if it raises, nothing is opened."""


class Onboarding:
    """Opening accounts, and the steps their onboarding workflows run."""

    def __init__(self, catalog: AccountCatalog, databases: Databases, runner: OnboardingRunner) -> None:
        self._catalog = catalog
        self._databases = databases
        self._runner = runner

    async def open(self, name: str, wait: timedelta = ONBOARD_WAIT) -> tuple[Account, str, str]:
        """Register an account in the least-used database and onboard it: (account, API key, status).

        The status is Active when onboarding finished within `wait`, else Onboarding: the workflow
        goes on (with no deadline of its own), and `resume` starts it again if it never began.
        """
        await self._runner.ensure_available()
        database = place(self._databases.placeable(), await self._catalog.accounts_per_database())
        account, api_key = await self._catalog.register(name, database)
        return account, api_key, await self._runner.run(account, wait)

    async def import_accounts(self, entries: Sequence[Entry], keep: KeepKeys | None = None) -> Imported:
        """Register every entry's account (all or none, spread over the least-used databases), each
        with its first API key, and start the import's one onboarding workflow.

        `keep` sees the keys before they commit (the CLI writes them to a file there), so no
        account is opened whose key was not kept.
        """
        await self._runner.ensure_available()
        databases = place_many(
            self._databases.placeable(), await self._catalog.accounts_per_database(), len(entries)
        )
        import_id = uuid.uuid4()

        def before_commit(registered: list[tuple[Account, str]]) -> None:
            if keep is not None:
                keep(_imported(entries, registered))

        registered = await self._catalog.register_many(
            [NewAccount(e.name, d) for e, d in zip(entries, databases, strict=True)],
            import_id,
            before_commit,
        )
        workflow_id: str | None = None
        try:
            workflow_id = await self._runner.start_import(import_id, len(entries))
        except Exception:  # registered and kept: the worker's sweep starts the workflow later
            log.warning("import %s is registered; its onboarding starts later", import_id, exc_info=True)
        return Imported(import_id, workflow_id, _imported(entries, registered))

    async def wait_import(self, import_id: UUID, wait: timedelta = ONBOARD_WAIT) -> bool:
        """Wait up to `wait` for an import's onboarding; True if it finished."""
        return await self._runner.wait_import(import_id, wait)

    async def rejoin(self, account: Account, wait: timedelta = ONBOARD_WAIT) -> str:
        """Start or join an existing account's onboarding; its status after at most `wait`."""
        return await self._runner.run(account, wait)

    async def resume(self) -> int:
        """Start onboarding again for accounts left Onboarding (a workflow that never started, or
        one that failed), and for imports not finished; running workflows are just joined.
        Returns how many accounts and imports."""
        waiting = await self._catalog.onboarding()
        for account in waiting:
            await self._runner.start(account)
        imports = await self._catalog.unfinished_imports()
        for import_id in imports:
            state = await self._catalog.import_state(import_id)
            await self._runner.start_import(import_id, state.accounts if state else 0)
        return len(waiting) + len(imports)

    async def find_partition(self, account_id: UUID, database: str) -> str:
        """The account's partition of `events` in its database. Partitions are fixed and chosen by
        AccountId, so this creates nothing (it used to create a partition per account)."""
        return await event_partition(self._databases.pool(database), account_id)

    async def activate(self, account_id: UUID) -> None:
        """The account is Active; its keys work from now on (idempotent)."""
        await self._catalog.set_status(account_id, AccountStatus.ACTIVE)

    async def activate_imported(self, import_id: UUID, limit: int = IMPORT_CHUNK) -> int:
        """Activate up to `limit` of an import's accounts still onboarding; when fewer were left,
        the import is finished. How many were activated (idempotent: a retry goes on)."""
        activated = await self._catalog.activate_imported(import_id, limit)
        if activated < limit:
            await self._catalog.finish_import(import_id)
        return activated


def _imported(entries: Sequence[Entry], registered: list[tuple[Account, str]]) -> list[ImportedAccount]:
    return [ImportedAccount(e, a, k) for e, (a, k) in zip(entries, registered, strict=True)]
