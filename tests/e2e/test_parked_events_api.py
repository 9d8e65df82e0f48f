"""Parked events through the operator API, with the real worker projecting: an order whose read-model
row is refused parks with its later cancel held behind it; GET /projections counts them and
GET /projections/parked lists them; a retry while the cause remains changes nothing, a retry once
it is fixed applies both in order; and bad requests get their 4xx problem.

The cause is a CHECK constraint the test adds to the orders read model (refusing one customer's
name), and the fix drops it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from core.settings import Settings
from tests.conftest import Tenant, onboard
from tests.e2e.test_bulk_onboarding import run_cli
from tests.e2e.test_http_contract import assert_problem


@pytest.fixture
async def refused_name(pool: asyncpg.Pool[Any]) -> AsyncIterator[tuple[str, str]]:
    """(constraint, customer name): the orders read model refuses that name until the constraint goes."""
    constraint, name = f"test_refuse_{uuid.uuid4().hex[:10]}", f"Refused {uuid.uuid4().hex[:10]}"
    await pool.execute(f"ALTER TABLE rm_order ADD CONSTRAINT {constraint} CHECK (customer_name <> '{name}')")
    yield constraint, name
    await pool.execute(f"ALTER TABLE rm_order DROP CONSTRAINT IF EXISTS {constraint}")


async def parked_of(
    http: httpx.AsyncClient, operator: dict[str, str], tenant: Tenant
) -> list[dict[str, Any]]:
    params = {"Projection": "orders", "AccountId": str(tenant.account_id)}
    response = await http.get("/projections/parked", params=params, headers=operator)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


async def park_an_order(
    http: httpx.AsyncClient, operator: dict[str, str], tenant: Tenant, name: str
) -> tuple[str, list[dict[str, Any]]]:
    """An order for the refused name, then its cancel: the worker parks both. (order id, parked)"""
    order_id = str(uuid.uuid4())
    line = {"ProductCode": "P", "Quantity": 1, "UnitPrice": "1.00"}
    placed = await http.post(
        "/commands/PlaceOrder",
        json={"OrderId": order_id, "CustomerName": name, "OrderLines": [line]},
        headers=tenant.headers,
    )
    assert placed.status_code == 200, placed.text
    cancelled = await http.post(
        "/commands/CancelOrder",
        json={"OrderId": order_id, "Reason": "changed my mind"},
        headers=tenant.headers,
    )
    assert cancelled.status_code == 200, cancelled.text
    for _ in range(100):
        parked = await parked_of(http, operator, tenant)
        if len(parked) == 2:
            break
        await asyncio.sleep(0.1)
    return order_id, parked


async def test_operators_see_retry_and_release_a_parked_stream(
    http: httpx.AsyncClient,
    operator: dict[str, str],
    pool: asyncpg.Pool[Any],
    refused_name: tuple[str, str],
) -> None:
    constraint, name = refused_name
    tenant = await onboard(http, "Parked")
    order_id, (refused, held) = await park_an_order(http, operator, tenant, name)
    assert (refused["StreamId"], refused["Event"], "HeldBehind" in refused) == (
        f"Order-{order_id}",
        "OrderPlaced",
        False,
    )
    assert "CheckViolation" in refused["Reason"]
    assert (held["Event"], held["HeldBehind"]) == ("OrderCancelled", refused["SequenceNumber"])

    status = await http.get("/projections", params={"AccountId": str(tenant.account_id)}, headers=operator)
    orders = next(p for p in status.json() if p["Name"] == "orders")
    assert (orders["Parked"], orders["Held"], orders["EventsBehind"]) == (1, 1, 0)

    release = {"AccountId": str(tenant.account_id), "StreamId": f"Order-{order_id}"}
    again = await http.post("/projections/orders/parked/retry", json=release, headers=operator)
    assert again.status_code == 200, again.text
    assert (again.json()["Applied"], again.json()["StillParked"]) == (0, 2)
    assert "CheckViolation" in again.json()["Reason"]

    await pool.execute(f"ALTER TABLE rm_order DROP CONSTRAINT {constraint}")
    retried = await http.post("/projections/orders/parked/retry", json=release, headers=operator)
    assert retried.status_code == 200, retried.text
    assert retried.json() == {"Applied": 2, "Skipped": 0, "StillParked": 0}
    assert await parked_of(http, operator, tenant) == []
    read = await http.get("/queries/GetOrders", params={"CustomerName": name}, headers=tenant.headers)
    assert [item["Status"] for item in read.json()["Items"]] == ["Cancelled"]

    nothing = await http.post("/projections/orders/parked/skip", json=release, headers=operator)
    assert "has no events parked" in assert_problem(nothing, 404)["detail"]


async def test_bad_requests_for_parked_events_get_their_problem(
    http: httpx.AsyncClient, operator: dict[str, str], tenant: Tenant
) -> None:
    release = {"AccountId": str(tenant.account_id), "StreamId": "Order-x"}
    assert_problem(await http.post("/projections/nope/parked/retry", json=release, headers=operator), 404)
    assert_problem(
        await http.get("/projections/parked", params={"Projection": "nope"}, headers=operator), 404
    )
    assert_problem(await http.get("/projections/parked", params={"AccountId": "x"}, headers=operator), 422)
    bad = await http.post(
        "/projections/orders/parked/retry", json={"AccountId": "x", "StreamId": "y"}, headers=operator
    )
    assert_problem(bad, 422)
    nul = await http.post(
        "/projections/orders/parked/skip", json={**release, "StreamId": "Order-\u0000"}, headers=operator
    )
    assert_problem(nul, 422)
    extra = await http.post(
        "/projections/orders/parked/retry", json={**release, "Extra": 1}, headers=operator
    )
    assert_problem(extra, 422)
    assert_problem(await http.post("/projections/orders/parked/retry", json=release), 401)
    assert_problem(
        await http.post("/projections/orders/parked/retry", json=release, headers=tenant.headers), 401
    )


async def test_the_cli_lists_retries_and_skips_parked_events(
    http: httpx.AsyncClient,
    operator: dict[str, str],
    settings: Settings,
    pool: asyncpg.Pool[Any],
    refused_name: tuple[str, str],
) -> None:
    constraint, name = refused_name
    tenant = await onboard(http, "Parked CLI")
    order_id, _ = await park_an_order(http, operator, tenant, name)
    account, stream = str(tenant.account_id), f"Order-{order_id}"

    listed = await asyncio.to_thread(run_cli, settings, "projections", "parked", "--account", account)
    assert listed.returncode == 0, listed.stderr
    assert (
        f"{stream} #" in listed.stdout
        and "CheckViolation" in listed.stdout
        and "held behind #" in listed.stdout
    )

    again = await asyncio.to_thread(run_cli, settings, "projections", "retry", "orders", account, stream)
    assert again.returncode == 1 and "0 applied, 0 skipped, 2 still parked" in again.stdout, again.stdout
    assert "refused again" in again.stdout

    await pool.execute(f"ALTER TABLE rm_order DROP CONSTRAINT {constraint}")
    retried = await asyncio.to_thread(run_cli, settings, "projections", "retry", "orders", account, stream)
    assert retried.returncode == 0 and "2 applied" in retried.stdout, retried.stdout + retried.stderr

    nothing = await asyncio.to_thread(run_cli, settings, "projections", "skip", "orders", account, stream)
    assert nothing.returncode == 2 and "has no events parked" in nothing.stderr
    bad = await asyncio.to_thread(run_cli, settings, "projections", "retry", "orders", "not-an-id", stream)
    assert bad.returncode == 2 and "ACCOUNT must be an AccountId" in bad.stderr
