"""The read side's dependencies for the HTTP layer: `reader`, the caller's account's read side
(it depends on tenancy's `tenant`), held in one of the account's slots (`tenancy.bulkhead`) while
the query runs; a list query's page may hold a megabyte, so it is a heavy request. What it answers
is charged to the account's byte budget (`tenancy.byte_budget`): 429 while the account is in debt."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Request
from litestar.di import Provide

from queries.reader import ReadModels, TenantReader
from queries.views import QUERIES, ListParams
from tenancy.bulkhead import AccountBulkhead
from tenancy.byte_budget import ByteBudget, over_budget
from tenancy.routing import Route

_LISTS = frozenset(name for name, spec in QUERIES.items() if issubclass(spec.params, ListParams))


def query_dependencies(read_models: ReadModels, budget: ByteBudget | None) -> dict[str, Provide]:
    """`budget` None: no byte budget (ERP_ACCOUNT_BYTES=0)."""

    async def reader(
        request: Request[Any, Any, Any], tenant: Route, bulkhead: AccountBulkhead
    ) -> AsyncIterator[TenantReader]:
        if budget is not None:
            await over_budget(budget, tenant.account_id)
        heavy = request.url.path.rsplit("/", 1)[-1] in _LISTS
        async with bulkhead.slot(tenant.account_id, heavy=heavy):
            reader = read_models.of(tenant)
            try:
                yield reader
            finally:
                if budget is not None:
                    budget.charge(tenant.account_id, reader.served)

    return {"reader": Provide(reader)}
