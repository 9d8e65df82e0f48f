"""The read side's dependencies for the HTTP layer: `reader`, the caller's account's read side
(it depends on tenancy's `tenant`)."""

from __future__ import annotations

from litestar.di import Provide

from queries.reader import ReadModels, TenantReader
from tenancy.routing import Route


def query_dependencies(read_models: ReadModels) -> dict[str, Provide]:
    def reader(tenant: Route) -> TenantReader:
        return read_models.of(tenant)

    return {"reader": Provide(reader, sync_to_thread=False)}
