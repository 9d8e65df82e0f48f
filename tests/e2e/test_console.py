"""The operator endpoints the console reads that had none: GET /accounts (every account, its status
and database) and GET /operations (builds, rebuilds and moves with their progress)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from tests.conftest import Tenant
from tests.e2e.test_http_contract import assert_problem, order_body


async def place_orders(http: httpx.AsyncClient, tenant: Tenant, count: int) -> None:
    for n in range(count):
        placed = await http.post(
            "/commands/PlaceOrder", json=order_body(f"Console {n}"), headers=tenant.headers
        )
        assert placed.status_code == 200, placed.text


async def operations(http: httpx.AsyncClient, operator: dict[str, str]) -> list[dict[str, Any]]:
    response = await http.get("/operations", headers=operator)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


async def test_accounts_and_operations_are_listed_for_operators_only(
    http: httpx.AsyncClient, operator: dict[str, str], tenant: Tenant
) -> None:
    await place_orders(http, tenant, 3)
    listed = await http.get("/accounts", headers=operator)
    assert listed.status_code == 200, listed.text
    mine = next(a for a in listed.json() if a["AccountId"] == str(tenant.account_id))
    assert mine == {
        "AccountId": str(tenant.account_id),
        "Name": "Tenant",
        "Status": "Active",
        "Database": "main",
    }
    assert len((await http.get("/accounts", params={"Limit": 1}, headers=operator)).json()) == 1
    assert_problem(await http.get("/accounts", params={"Limit": 0}, headers=operator), 422)
    assert_problem(await http.get("/accounts"), 401)
    assert_problem(await http.get("/accounts", headers=tenant.headers), 401)

    started = await http.post(
        "/projections/orders/rebuild", json={"AccountId": str(tenant.account_id)}, headers=operator
    )
    assert started.status_code == 202, started.text
    workflow_id = started.json()["WorkflowId"]
    deadline = time.monotonic() + 60
    while True:
        seen = next((o for o in await operations(http, operator) if o["WorkflowId"] == workflow_id), None)
        if seen is not None and seen["Status"] == "Completed":
            break
        assert time.monotonic() < deadline, seen
        await asyncio.sleep(0.2)
    assert seen["Kind"] == "Rebuild" and seen["Projection"] == "orders", seen
    assert seen["AccountId"] == str(tenant.account_id) and seen["Phase"] == "done", seen
    assert seen["Done"] == seen["Total"] == 3, seen
    assert "StartedAt" in seen and "ClosedAt" in seen, seen
    assert_problem(await http.get("/operations"), 401)
    assert_problem(await http.get("/operations", headers=tenant.headers), 401)
