"""One account's read side: consistency waits on its read models, and queries under its RLS session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import msgspec

from queries.paging import Page
from queries.shown import Scope
from queries.views import QueryParams, QuerySpec
from queries.waiter import ConsistencyWaiter
from tenancy.rls import tenant_transaction
from tenancy.routing import Databases, Route

Charge = Callable[[int], None]
"""Counts the bytes a query answered against its account."""
Admission = Callable[[], AbstractAsyncContextManager[Charge]]
"""Holds a query's place while it runs (its account's slot), and gives what to charge it to."""


@asynccontextmanager
async def _admitted() -> AsyncIterator[Charge]:
    yield lambda _: None


class Waitable(Protocol):
    """A read model a query may wait on: what the wait looks at."""

    @property
    def scope(self) -> Scope: ...


class TenantReader:
    """Reads for one account, in the database it lives in."""

    def __init__(
        self,
        route: Route,
        databases: Databases,
        waiter: ConsistencyWaiter,
        admission: Admission = _admitted,
    ) -> None:
        self.route = route
        self._pool = databases.pool(route.database)
        self._waiter = waiter
        self._admission = admission

    async def caught_up(self, projection: Waitable, targets: dict[str, int], within: float) -> bool:
        """Whether `projection` shows `targets` ({StreamType: Position}) within `within` seconds: the
        events of its own streams, and those of the elements it shows data of, fan-outs done."""
        return await self._waiter.wait(self._pool, self.route.account_id, projection.scope, targets, within)

    async def run(self, spec: QuerySpec, params: QueryParams) -> Page[Any]:
        """The query, in a transaction that sees only this account's rows, once admitted (after
        any consistency wait: a wait holds no slot); the bytes it answers are charged before its
        slot is let go, so the account's next query is admitted knowing them."""
        async with self._admission() as charge:
            async with tenant_transaction(self._pool, self.route.account_id) as connection:
                page = await spec.run(connection, params)
            charge(sum(len(item) for item in page.items if isinstance(item, msgspec.Raw)))
        return page


class ReadModels:
    """The read side of every tenant database."""

    def __init__(self, databases: Databases, waiter: ConsistencyWaiter) -> None:
        self._databases = databases
        self._waiter = waiter

    def of(self, route: Route, admission: Admission = _admitted) -> TenantReader:
        return TenantReader(route, self._databases, self._waiter, admission)
