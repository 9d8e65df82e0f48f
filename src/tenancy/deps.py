"""Tenancy's dependencies for the HTTP layer: `tenant` (the caller's Route, from its API key),
`onboarding` and `catalog` (operators)."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import Provide

from tenancy.auth import authenticate
from tenancy.catalog import AccountCatalog
from tenancy.keys import KeyCache
from tenancy.onboarding import Onboarding
from tenancy.routing import Route


def tenancy_dependencies(
    keys: KeyCache, onboarding: Onboarding, catalog: AccountCatalog
) -> dict[str, Provide]:
    async def tenant(request: Request[Any, Any, Any]) -> Route:
        return await authenticate(keys, request)

    return {
        "tenant": Provide(tenant),
        "onboarding": Provide(lambda: onboarding, use_cache=True, sync_to_thread=False),
        "catalog": Provide(lambda: catalog, use_cache=True, sync_to_thread=False),
    }
