"""Offboarding an account: the steps a workflow runs, each idempotent (a retried step goes on where
it stopped). The export of its events between them is the workflow's (`workflows.activities`):
tenancy does not read events.

1. `revoke`: the catalog marks the account Offboarding and deletes its API keys (no lookup finds
   them again), its tenant database fences it as `left` (once the writes in flight have committed,
   every later one is refused, never stored), and every API is told to forget its cached keys. An
   API that still holds a key (Redis did not carry the message) is refused by the fence, answers
   503 and looks the key up again: 401.
2. (The workflow exports the account's events, which no longer change.)
3. (The workflow waits until no API can still hold the account's route: twice ERP_CACHE_TTL.)
4. `purge`: every row of the account in its tenant database, in chunks (the same removal as a
   move's old copy, allowed by the fence), then the fence; then what a move left of it in other
   databases (a `left` fence, a tombstone); last the catalog's rows: its keys and the account (the
   per-database count follows by trigger).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from core.invalidations import ROUTES, Invalidations
from tenancy.catalog import AccountCatalog
from tenancy.fences import LEFT, fence, fence_of, lift
from tenancy.moving import purge_account
from tenancy.routing import Databases

OFFBOARDED = "offboarded"
"""The fence's `other` for an account offboarded: it went nowhere."""


class OffboardAbandoned(RuntimeError):
    """The account is not where, or not in the state, the offboarding expected: nothing was done."""


@dataclass(frozen=True, slots=True)
class OffboardStep:
    """Which account is offboarded, from which tenant database, in which offboarding."""

    account_id: UUID
    database: str
    offboard_id: UUID


class AccountOffboarder:
    """The steps of offboarding an account (see the module's docstring)."""

    def __init__(
        self, databases: Databases, catalog: AccountCatalog, invalidations: Invalidations | None = None
    ) -> None:
        self._databases = databases
        self._catalog = catalog
        self._invalidations = invalidations

    def _offboarded(self, held: tuple[str, str, UUID] | None) -> bool:
        return held is not None and held[0] == LEFT and held[1] == OFFBOARDED

    async def revoke(self, step: OffboardStep) -> None:
        """Step 1: no key of the account works any more, and no write of it is stored.
        OffboardAbandoned, with nothing done, if a move has fenced it or the catalog does not have
        it Active (or Offboarding) in `database`."""
        pool = self._databases.pool(step.database)
        held = await fence_of(pool, step.account_id)
        if held is not None and not self._offboarded(held):
            raise OffboardAbandoned(
                f"account {step.account_id} is fenced in {step.database} by a move ({held[0]}); "
                "nothing was done"
            )
        if not await self._catalog.begin_offboarding(step.account_id, step.database):
            if held is not None:  # the catalog is being cleared already (a retry after the purge)
                return
            raise OffboardAbandoned(
                f"account {step.account_id} is not Active in {step.database}; nothing was done"
            )
        if held is None:
            async with pool.acquire() as connection, connection.transaction():
                await fence(connection, step.account_id, LEFT, OFFBOARDED, step.offboard_id)
        if self._invalidations is not None:  # every API forgets the account's keys at once
            await self._invalidations.publish(ROUTES, step.account_id)

    async def purge(self, step: OffboardStep, progress: Callable[[int], None] | None = None) -> int:
        """Step 4: every row of the account, in every tenant database, then the catalog's; how many
        rows were removed from the tenant databases."""
        removed = 0

        def counted(rows: int) -> None:
            if progress is not None:
                progress(removed + rows)

        for name in self._databases.names():
            pool = self._databases.pool(name)
            held = await fence_of(pool, step.account_id)
            if name == step.database:
                if held is None:
                    continue  # removed on an earlier try, fence last
                if not self._offboarded(held):
                    raise OffboardAbandoned(
                        f"account {step.account_id} is not fenced for offboarding in {name}: "
                        "its rows are not removed"
                    )
            elif held is None or held[0] != LEFT:
                continue  # nothing of it there (a move's tombstone says `left`)
            removed += await purge_account(pool, step.account_id, name, counted)
            await lift(pool, step.account_id)
        await self._catalog.remove(step.account_id)
        return removed
