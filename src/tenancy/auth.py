"""Authentication: a tenant's API key decides its AccountId; operators present the operator token."""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from core.problems import problem
from core.telemetry import ACCOUNT_ID
from tenancy.catalog import AccountStatus
from tenancy.keys import KeyCache
from tenancy.routing import Route


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise problem(401, "send 'Authorization: Bearer <api key>'", {"WWW-Authenticate": "Bearer"})
    return token.strip()


async def authenticate(keys: KeyCache, connection: ASGIConnection[Any, Any, Any, Any]) -> Route:
    """Where the request's account lives, decided by its API key alone.

    401 for a missing, unknown, revoked or expired key, or an account that is not active; 503 with
    Retry-After while the account is still being onboarded.
    """
    owner = await keys.resolve(bearer_token(connection))
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


def operator_guard(token: str) -> Guard:
    """A guard for operator endpoints: the bearer token must equal `token` (ERP_OPERATOR_TOKEN)."""
    expected = token.encode()

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if not hmac.compare_digest(bearer_token(connection).encode(), expected):
            raise problem(401, "this endpoint needs the operator token", {"WWW-Authenticate": "Bearer"})

    return guard
