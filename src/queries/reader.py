"""One account's read side: consistency waits on its read models, and queries under its RLS session."""

from __future__ import annotations

from typing import Any

import msgspec

from queries.paging import Page
from queries.projection import Projection
from queries.views import QueryParams, QuerySpec
from queries.waiter import ConsistencyWaiter
from tenancy.rls import tenant_transaction
from tenancy.routing import Databases, Route


class TenantReader:
    """Reads for one account, in the database it lives in."""

    def __init__(self, route: Route, databases: Databases, waiter: ConsistencyWaiter) -> None:
        self.route = route
        self._pool = databases.pool(route.database)
        self._waiter = waiter
        self.served = 0
        """Bytes of items this reader's queries answered (what the account's byte budget is charged)."""

    async def caught_up(self, projection: Projection, targets: dict[str, int], within: float) -> bool:
        """Whether `projection` covers `targets` ({StreamType: Position}) within `within` seconds."""
        return await self._waiter.wait(
            self._pool, self.route.account_id, projection.name, projection.stream_types, targets, within
        )

    async def run(self, spec: QuerySpec, params: QueryParams) -> Page[Any]:
        """The query, in a transaction that sees only this account's rows."""
        async with tenant_transaction(self._pool, self.route.account_id) as connection:
            page = await spec.run(connection, params)
        self.served += sum(len(item) for item in page.items if isinstance(item, msgspec.Raw))
        return page


class ReadModels:
    """The read side of every tenant database."""

    def __init__(self, databases: Databases, waiter: ConsistencyWaiter) -> None:
        self._databases = databases
        self._waiter = waiter

    def of(self, route: Route) -> TenantReader:
        return TenantReader(route, self._databases, self._waiter)
