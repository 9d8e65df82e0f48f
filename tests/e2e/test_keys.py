"""API keys: revoked, expired and foreign keys get 401 and change nothing."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx

from tests.conftest import Tenant, onboard


def order() -> dict[str, Any]:
    return {
        "OrderId": str(uuid.uuid4()),
        "CustomerName": "Key Holder",
        "OrderLines": [{"ProductCode": "P", "Quantity": 1, "UnitPrice": "1.00"}],
    }


async def stored_events(pool: asyncpg.Pool[Any], tenant: Tenant) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM events WHERE account_id = $1", tenant.account_id))


async def wait_until_refused(http: httpx.AsyncClient, tenant: Tenant) -> httpx.Response:
    """The API caches resolved keys for a few seconds; a revoked key stops working within that."""
    for _ in range(100):
        response = await http.get("/queries/GetOrders", params={"CustomerName": "x"}, headers=tenant.headers)
        if response.status_code == 401:
            return response
        await asyncio.sleep(0.1)
    raise AssertionError("the key kept working")


async def test_a_revoked_key_is_refused(http: httpx.AsyncClient, pool: asyncpg.Pool[Any]) -> None:
    tenant = await onboard(http, "Revoked")
    assert (await http.post("/commands/PlaceOrder", json=order(), headers=tenant.headers)).status_code == 200
    await pool.execute("UPDATE api_keys SET revoked_at = now() WHERE account_id = $1", tenant.account_id)
    refused = await wait_until_refused(http, tenant)
    assert refused.headers["content-type"] == "application/problem+json"
    assert "revoked" in refused.json()["detail"]
    before = await stored_events(pool, tenant)
    command = await http.post("/commands/PlaceOrder", json=order(), headers=tenant.headers)
    assert command.status_code == 401
    assert await stored_events(pool, tenant) == before == 1


async def test_an_expired_key_is_refused(http: httpx.AsyncClient, pool: asyncpg.Pool[Any]) -> None:
    tenant = await onboard(http, "Expired")
    await pool.execute(
        "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE account_id = $1",
        tenant.account_id,
    )
    await wait_until_refused(http, tenant)
    command = await http.post("/commands/PlaceOrder", json=order(), headers=tenant.headers)
    assert command.status_code == 401
    assert await stored_events(pool, tenant) == 0


async def test_a_key_of_another_scheme_or_made_up_is_refused(http: httpx.AsyncClient) -> None:
    for headers in (
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer erp_{uuid.uuid4().hex}"},
    ):
        response = await http.post("/commands/PlaceOrder", json=order(), headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["detail"]


async def test_the_operator_token_is_not_a_tenant_key(
    http: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    response = await http.post("/commands/PlaceOrder", json=order(), headers=operator)
    assert response.status_code == 401
