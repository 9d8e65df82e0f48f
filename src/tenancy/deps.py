"""Tenancy's dependencies for the HTTP layer: `tenant` (the caller's Route, from its API key),
`command_tenant` (the same, once the command fits within the account's rate limit), `onboarding` and
`catalog` (operators)."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import NamedDependency, Provide

from tenancy.auth import authenticate
from tenancy.catalog import AccountCatalog
from tenancy.keys import KeyCache
from tenancy.onboarding import Onboarding
from tenancy.rate_limit import AccountRateLimiter
from tenancy.routing import Route


def tenancy_dependencies(
    keys: KeyCache, onboarding: Onboarding, catalog: AccountCatalog, limiter: AccountRateLimiter | None
) -> dict[str, Provide]:
    """`limiter` None: no rate limit (ERP_COMMAND_RATE=0)."""

    async def tenant(request: Request[Any, Any, Any]) -> Route:
        return await authenticate(keys, request)

    async def command_tenant(tenant: NamedDependency[Route]) -> Route:
        """After authentication (the key decides the account), before the command is even parsed."""
        if limiter is not None and (retry_after := await limiter.hit(tenant.account_id)) is not None:
            raise limiter.refusal(tenant.account_id, retry_after)
        return tenant

    return {
        "tenant": Provide(tenant),
        "command_tenant": Provide(command_tenant),
        "onboarding": Provide(lambda: onboarding, use_cache=True, sync_to_thread=False),
        "catalog": Provide(lambda: catalog, use_cache=True, sync_to_thread=False),
    }
