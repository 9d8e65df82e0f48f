"""Onboarding, the one use case: place a new account, register it, find its partition, activate it.

The two steps after registering (partition, then activation) are idempotent, so a durable workflow
can retry them, and neither needs DDL (partitions are fixed, chosen by AccountId). The workflow is
behind `OnboardingRunner` (`workflows.starters` runs it on Temporal). An account whose workflow
never started (the engine unreachable right after registering) stays Onboarding until `resume`
starts it again; the worker calls that every 30 s.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol
from uuid import UUID

from tenancy.catalog import Account, AccountCatalog, AccountStatus
from tenancy.routing import Databases, event_partition, place

ONBOARD_WAIT = timedelta(seconds=15)
"""How long opening an account waits for onboarding before answering with Status Onboarding."""


class OnboardingRunner(Protocol):
    """Runs an account's onboarding steps durably (a workflow), once per account."""

    async def ensure_available(self) -> None:
        """Raise if onboarding cannot be started now, before anything is registered."""

    async def start(self, account: Account) -> None:
        """Start the account's onboarding, or join it while it runs."""

    async def run(self, account: Account, within: timedelta) -> str:
        """Start or join the account's onboarding and wait up to `within`; the account's status then."""


class Onboarding:
    """Opening accounts, and the steps their onboarding workflow runs."""

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
        database = place(self._databases.names(), await self._catalog.accounts_per_database())
        account, api_key = await self._catalog.register(name, database)
        return account, api_key, await self._runner.run(account, wait)

    async def rejoin(self, account: Account, wait: timedelta = ONBOARD_WAIT) -> str:
        """Start or join an existing account's onboarding; its status after at most `wait`."""
        return await self._runner.run(account, wait)

    async def resume(self) -> int:
        """Start onboarding again for every account left Onboarding (a workflow that never started, or
        one that failed); accounts whose workflow still runs just join it. Returns how many."""
        waiting = await self._catalog.onboarding()
        for account in waiting:
            await self._runner.start(account)
        return len(waiting)

    async def find_partition(self, account_id: UUID, database: str) -> str:
        """Step 1: the account's partition of `events` in its database. Partitions are fixed and chosen
        by AccountId, so this creates nothing (it used to create a partition per account)."""
        return await event_partition(self._databases.pool(database), account_id)

    async def activate(self, account_id: UUID) -> None:
        """Step 2: the account is Active; its keys work from now on (idempotent)."""
        await self._catalog.set_status(account_id, AccountStatus.ACTIVE)
