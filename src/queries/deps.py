"""The read side's dependencies for the HTTP layer: `reader`, the caller's account's read side
(it depends on tenancy's `tenant`). A query runs in one of the account's slots (`tenancy.bulkhead`),
taken after any consistency wait; a list query's page may hold a megabyte, so it is a heavy
request. What it answers is charged to the account's byte budget (`tenancy.byte_budget`): 429
while the account is in debt, looked at on arrival and again once the slot is held (the account's
earlier pages charged by then)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from litestar import Request
from litestar.di import Provide

from queries.notification_stream import NotificationStreams
from queries.reader import Charge, ReadModels, TenantReader
from queries.views import QUERIES, ListParams
from tenancy.bulkhead import AccountBulkhead
from tenancy.byte_budget import ByteBudget, over_budget
from tenancy.routing import Route

_LISTS = frozenset(name for name, spec in QUERIES.items() if issubclass(spec.params, ListParams))


def query_dependencies(
    read_models: ReadModels, budget: ByteBudget | None, streams: NotificationStreams
) -> dict[str, Provide]:
    """`budget` None: no byte budget (ERP_ACCOUNT_BYTES=0); `streams`: GET /notifications's."""

    async def reader(
        request: Request[Any, Any, Any], tenant: Route, bulkhead: AccountBulkhead
    ) -> TenantReader:
        account_id = tenant.account_id
        if budget is not None:
            await over_budget(budget, account_id)
        heavy = request.url.path.rsplit("/", 1)[-1] in _LISTS

        @asynccontextmanager
        async def admission() -> AsyncIterator[Charge]:
            async with bulkhead.slot(account_id, heavy=heavy):
                if budget is None:
                    yield lambda _: None
                    return
                await over_budget(budget, account_id, pause=False)  # its slot is for others now
                yield partial(budget.charge, account_id)

        return read_models.of(tenant, admission)

    return {
        "reader": Provide(reader),
        "notification_streams": Provide(lambda: streams, use_cache=True, sync_to_thread=False),
    }
