"""Authentication: a tenant's API key decides its AccountId; operators present the operator token."""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import Reference, SecurityScheme
from litestar.plugins.problem_details import ProblemDetailsException
from litestar.types import Guard

from core.problems import problem
from core.telemetry import ACCOUNT_ID
from tenancy.auth_failures import AuthFailures
from tenancy.catalog import API_KEY_LENGTH, AccountStatus
from tenancy.keys import KeyCache
from tenancy.routing import Route

AUTHORIZATION_SLACK = 32
"""Bytes an Authorization header may hold beside its token (the scheme and blanks)."""
TOO_LONG = f"the bearer token is longer than an API key ({API_KEY_LENGTH} characters)"


def bearer_token(
    connection: ASGIConnection[Any, Any, Any, Any],
    max_length: int = API_KEY_LENGTH,
    too_long: str = TOO_LONG,
) -> str:
    """The request's bearer token: 401 without one, or (`too_long`) with one longer than
    `max_length` bytes, refused before it is even decoded, and so before any hashing or lookup."""
    raw = next((value for name, value in connection.scope["headers"] if name == b"authorization"), b"")
    if len(raw) > max_length + AUTHORIZATION_SLACK:
        raise problem(401, too_long, {"WWW-Authenticate": "Bearer"})
    scheme, _, token = raw.decode("latin-1").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise problem(401, "send 'Authorization: Bearer <api key>'", {"WWW-Authenticate": "Bearer"})
    if len(token) > max_length:
        raise problem(401, too_long, {"WWW-Authenticate": "Bearer"})
    return token


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The client's address as the server saw it (behind a proxy: as the proxy headers say, where
    the server trusts them); an IPv6 address stands for its /64, which one client usually has."""
    host = connection.client.host if connection.client else "unknown"
    if ":" in host:
        with contextlib.suppress(ValueError):
            return str(ipaddress.IPv6Network(f"{host}/64", strict=False))
    return host


def refuse_if_over(failures: AuthFailures | None, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """429 with Retry-After when the client's address failed to authenticate too often lately."""
    if failures is not None and (wait := failures.retry_after(client_address(connection))):
        raise problem(
            429,
            f"too many failed authentications from this address; retry after {wait} s",
            {"Retry-After": str(wait)},
        )


def _failed(failures: AuthFailures | None, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    if failures is not None:
        failures.failed(client_address(connection))


async def authenticate(
    keys: KeyCache,
    connection: ASGIConnection[Any, Any, Any, Any],
    failures: AuthFailures | None = None,
) -> Route:
    """Where the request's account lives, decided by its API key alone.

    401 for a missing, unknown, revoked or expired key, or an account that is not active; 503 with
    Retry-After while the account is still being onboarded; 429 for an address that failed too
    often lately (`failures`), unless its key is one this process already knows.
    """
    try:
        token = bearer_token(connection)
    except ProblemDetailsException:
        refuse_if_over(failures, connection)
        _failed(failures, connection)
        raise
    over = failures is not None and failures.retry_after(client_address(connection)) is not None
    if over and not keys.knows(token):  # the key hashed twice only for an address over its limit
        refuse_if_over(failures, connection)
    owner = await keys.resolve(token)
    ACCOUNT_ID.set(str(owner.route.account_id) if owner else "")
    if owner is None or not (owner.active or owner.status == AccountStatus.ONBOARDING):
        # Counted once the lookup has said so: counted before it (and given back), a proxy's many
        # tenants using new keys at once were refused as if they had guessed.
        _failed(failures, connection)
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


def tenant_guard(keys: KeyCache, failures: AuthFailures | None = None) -> Guard:
    """A guard for tenant endpoints whose typed body Litestar decodes before their dependencies run
    (`POST /customisations`): a stranger's body is never read. The `tenant` dependency resolves
    the key again afterwards, from the cache."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        await authenticate(keys, connection, failures)

    return guard


OPERATOR_ONLY = "this endpoint needs the operator token"

TENANT_API_KEY = "TenantApiKey"
OPERATOR_TOKEN = "OperatorToken"
SECURITY_SCHEMES: dict[str, SecurityScheme | Reference] = {
    TENANT_API_KEY: SecurityScheme(
        type="http",
        scheme="bearer",
        description="A tenant's API key (POST /accounts answers the first): the caller's account.",
    ),
    OPERATOR_TOKEN: SecurityScheme(
        type="http",
        scheme="bearer",
        description="The operator token (ERP_OPERATOR_TOKEN): accounts and projections.",
    ),
}
"""The OpenAPI document's security schemes: each operation names the one it takes (health none)."""
TENANT_SECURITY: list[dict[str, list[str]]] = [{TENANT_API_KEY: []}]
OPERATOR_SECURITY: list[dict[str, list[str]]] = [{OPERATOR_TOKEN: []}]


def operator_guard(token: str, failures: AuthFailures | None = None) -> Guard:
    """A guard for operator endpoints: the bearer token must equal `token` (ERP_OPERATOR_TOKEN).
    An address that failed too often lately (`failures`) gets 429 before its token is looked at."""
    expected = token.encode()

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        refuse_if_over(failures, connection)
        try:
            presented = bearer_token(connection, len(expected), OPERATOR_ONLY)
            matches = hmac.compare_digest(presented.encode("latin-1"), expected)
        except ProblemDetailsException:
            _failed(failures, connection)
            raise
        if not matches:
            _failed(failures, connection)
            raise problem(401, OPERATOR_ONLY, {"WWW-Authenticate": "Bearer"})

    return guard
