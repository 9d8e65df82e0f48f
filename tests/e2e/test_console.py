"""The operator console in a real browser (headless Chromium through Playwright), against the real
API and worker: the page is served without data; it asks for the token (a wrong one is refused),
then shows the accounts, each projection's lag per database with its sparkline refreshed live, a
parked event retried with its button, and a rebuild started with a click whose progress bar goes to
done. The browser test runs on a stack of its own (database, Temporal, worker, API): its build
switches the orders read model to a new version. Also the endpoints the console added: GET /accounts
and GET /operations.

ERP_CONSOLE_SCREENSHOT=<file> keeps a screenshot of the console there as well.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import expect

from core.db import create_pool
from core.settings import Settings
from tests.conftest import OPERATOR_TOKEN, Tenant, onboard, private_stack
from tests.e2e.browser import chromium, installed
from tests.e2e.test_http_contract import assert_problem, order_body
from tests.e2e.test_parked_events_api import park_an_order

SECONDS = 1000.0
"""Playwright's timeouts are in milliseconds."""


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
    assert seen["EventsDone"] == seen["EventsTotal"] == 3, seen
    assert "StartedAt" in seen and "ClosedAt" in seen, seen
    assert_problem(await http.get("/operations"), 401)
    assert_problem(await http.get("/operations", headers=tenant.headers), 401)


async def test_the_page_is_served_without_the_token_and_holds_no_data(http: httpx.AsyncClient) -> None:
    page = await http.get("/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "default-src 'none'" in policy
    assert '<script src="/console/console.js"' in page.text and 'AccountId"' not in page.text
    script = await http.get("/console/console.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "Authorization: `Bearer ${token}`" in script.text
    style = await http.get("/console/console.css")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    assert "/console" not in (await http.get("/schema/openapi.json")).text


@dataclass
class Stack:
    api: str
    http: httpx.AsyncClient
    pool: asyncpg.Pool[Any]


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    """A database, Temporal, worker and API of the test's own: the build it starts switches the
    orders read model to a new version, which the rest of the suite's database need not see."""
    async with private_stack("console") as (api, url):
        pool = await create_pool(Settings(database_url=url), min_size=1, max_size=2)
        try:
            async with httpx.AsyncClient(base_url=api, timeout=30) as http:
                yield Stack(api, http, pool)
        finally:
            await pool.close()


async def test_an_operator_signs_in_sees_lag_retries_a_parked_event_and_rebuilds(
    stack: Stack, operator: dict[str, str]
) -> None:
    installed()  # before any work: without Chromium the test fails at once, naming the fix
    api, http, pool = stack.api, stack.http, stack.pool
    constraint, name = "test_refuse_console", "Refused by the console test"
    await pool.execute(f"ALTER TABLE rm_order ADD CONSTRAINT {constraint} CHECK (customer_name <> '{name}')")
    tenant = await onboard(http, "Console Tenant")
    await place_orders(http, tenant, 20)
    order_id, parked = await park_an_order(http, operator, tenant, name)
    assert len(parked) == 2
    other = await onboard(http, "Console Other")  # a second stream to skip rather than retry
    other_order_id, parked = await park_an_order(http, operator, other, name)
    assert len(parked) == 2

    shots = Path(tempfile.mkdtemp(prefix="erp-console-"))
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1500, "height": 1100})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda m: m.type == "error" and "401" not in m.text and errors.append(m.text))
        await page.goto(f"{api}/console")
        await expect(page.locator("#sign-in")).to_be_visible()
        assert await page.evaluate("sessionStorage.length") == 0

        await page.fill("#token", "not-the-operator-token")
        await page.click("#sign-in-button")
        await expect(page.locator("#sign-in-error")).to_have_text(
            "The token was refused.", timeout=10 * SECONDS
        )
        await expect(page.locator("#console")).to_be_hidden()

        await page.fill("#token", OPERATOR_TOKEN)
        await page.click("#sign-in-button")
        await expect(page.locator("#console")).to_be_visible()
        assert await page.evaluate("sessionStorage.getItem('erp-operator-token')") == OPERATOR_TOKEN

        account = page.locator(f"#accounts tr[data-account-id='{tenant.account_id}']")
        await expect(account).to_contain_text("Console Tenant", timeout=10 * SECONDS)
        await expect(account).to_contain_text("Active")
        orders = page.locator("#projections tr[data-projection='orders'][data-database='main']")
        await expect(orders).to_be_visible()
        await expect(orders.locator("svg.spark polyline")).to_have_count(1)
        # Refreshed live: the sparkline gathers a point a look.
        await expect(orders.locator("svg.spark[data-points='3']")).to_have_count(1, timeout=10 * SECONDS)

        stream = f"Order-{order_id}"
        refused = page.locator("#parked tr", has_text=stream).filter(has=page.locator("button.retry"))
        await expect(refused).to_contain_text("CheckViolation", timeout=10 * SECONDS)
        await expect(page.locator("#parked tr", has_text=stream)).to_have_count(2)
        await page.screenshot(path=shots / "parked.png", full_page=True)
        # Skipped while the cause remains: the refused event is passed by, the cancel behind it applied.
        skipped_stream = f"Order-{other_order_id}"
        skipped = page.locator("#parked tr", has_text=skipped_stream).filter(has=page.locator("button.skip"))
        await skipped.locator("button.skip").click()
        await expect(page.locator("#notice")).to_contain_text(
            f"{skipped_stream}: applied 1, skipped 1, still parked 0"
        )
        await expect(page.locator("#parked tr", has_text=skipped_stream)).to_have_count(0)
        await expect(page.locator("#parked tr", has_text=stream)).to_have_count(2)
        # Retried once the cause is gone: both applied, in order.
        await pool.execute(f"ALTER TABLE rm_order DROP CONSTRAINT {constraint}")
        await refused.locator("button.retry").click()
        await expect(page.locator("#notice")).to_contain_text(
            f"{stream}: applied 2, skipped 0, still parked 0"
        )
        await expect(page.locator("#parked tr", has_text=stream)).to_have_count(0)

        # A new version of the orders read model, built beside the live one and switched in.
        await orders.locator("button.rebuild").click()
        await expect(page.locator("#rebuild-result")).to_contain_text("Started erp-")
        build = page.locator("#operations tr[data-kind='Build'][data-projection='orders']").first
        bar = build.locator("[role=progressbar]")
        seen: list[str] = []
        deadline = time.monotonic() + 120
        while await build.get_attribute("data-status", timeout=30 * SECONDS) != "Completed":
            status, percent = (
                await build.get_attribute("data-status"),
                await bar.get_attribute("aria-valuenow"),
            )
            seen.append(f"{status} {percent}%")
            assert time.monotonic() < deadline, seen
            await asyncio.sleep(0.1)
        await expect(bar).to_have_attribute("aria-valuenow", "100")
        await expect(orders).to_contain_text("Completed, done", timeout=10 * SECONDS)
        print(f"the build's progress as the console showed it: {sorted(set(seen))}")

        # One account's read model, in place, chosen in the form.
        await page.select_option("#rebuild-projection", "customers")
        await page.select_option("#rebuild-account", str(tenant.account_id))
        await page.click("#rebuild-start")
        rebuild = page.locator("#operations tr[data-kind='Rebuild'][data-projection='customers']").first
        await expect(rebuild).to_have_attribute("data-status", "Completed", timeout=60 * SECONDS)
        await expect(rebuild).to_contain_text(f"account {str(tenant.account_id)[:8]}")
        await expect(rebuild.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "100")

        shot = shots / "console.png"
        await page.screenshot(path=shot, full_page=True)
        print(f"screenshots of the console: {shots}")
        if extra := os.environ.get("ERP_CONSOLE_SCREENSHOT"):
            await page.screenshot(path=extra, full_page=True)

        await page.click("#sign-out")
        await expect(page.locator("#sign-in")).to_be_visible()
        assert await page.evaluate("sessionStorage.length") == 0
        assert errors == [], errors
