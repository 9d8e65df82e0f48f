"""Authentication: a tenant's API key decides its AccountId; operators present the operator token."""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler

from erp.problems import problem
from erp.telemetry import ACCOUNT_ID
from tenancy.accounts import AccountStatus, KeyCache
from tenancy.routing import Route


def bearer_token(connection: ASGIConnection) -> str:  # type: ignore[type-arg]
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise problem(401, "send 'Authorization: Bearer <api key>'", {"WWW-Authenticate": "Bearer"})
    return token.strip()


async def tenant_route(request: Request[Any, Any, Any], services: NamedDependency[Any]) -> Route:
    """Where the request's account lives, decided by its API key alone.

    401 for a missing, unknown, revoked or expired key, or an account that is not active; 503 with
    Retry-After while the account is still being onboarded.

    It depends on `services` (rather than beside it) so Litestar resolves the two
    one after the other instead of spawning a task group per request.
    """
    keys: KeyCache = services.keys
    owner = await keys.resolve(bearer_token(request))
    ACCOUNT_ID.set(str(owner.route.account_id) if owner else "")
    if owner is not None and owner.status == AccountStatus.ONBOARDING:
        raise problem(
            503,
            f"account {owner.route.account_id} is still being onboarded; try again shortly",
            {"Retry-After": "1"},
        )
    if owner is None or not owner.active:
        raise problem(
            401,
            "the API key is unknown, revoked or expired, or its account is not active",
            {"WWW-Authenticate": "Bearer"},
        )
    return owner.route


def operator_guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Guard for operator endpoints: the bearer token must equal ERP_OPERATOR_TOKEN."""
    expected: str = connection.app.state.services.settings.operator_token
    if not hmac.compare_digest(bearer_token(connection).encode(), expected.encode()):
        raise problem(401, "this endpoint needs the operator token", {"WWW-Authenticate": "Bearer"})
