"""Each account's byte budget over HTTP: an account sending and reading the biggest orders gets 429
with Retry-After once it has moved its burst, nothing it was refused is stored, and another account
is served meanwhile."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from core.settings import Settings
from tests.conftest import onboard, own_api
from tests.e2e.test_http_contract import assert_problem

RATE = 100_000
"""Bytes a second; the burst is four times that: about six orders of 1,000 lines (64 kB each)."""


@pytest.fixture(scope="module")
async def budgeted(settings: Settings, worker: None) -> AsyncIterator[httpx.AsyncClient]:
    """An API of its own with a small byte budget, on the session's database, worker and Temporal,
    and no command rate limit (a big body costs many commands: tests/e2e/test_rate_limit.py)."""
    async with own_api(settings, account_bytes=RATE, command_rate=0) as client:
        yield client


def big_order(customer: str) -> dict[str, Any]:
    lines = [{"ProductCode": f"P-{n:04d}", "Quantity": 1, "UnitPrice": "1.00"} for n in range(1000)]
    return {"OrderId": str(uuid.uuid4()), "CustomerName": customer, "OrderLines": lines}


async def test_an_account_over_its_byte_budget_waits_and_stores_nothing_refused(
    budgeted: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    heavy, light = await onboard(budgeted, "Heavy"), await onboard(budgeted, "Light")
    sent = [big_order("Big Buyer") for _ in range(12)]
    answers = [await budgeted.post("/commands/PlaceOrder", json=body, headers=heavy.headers) for body in sent]
    statuses = [a.status_code for a in answers]
    assert 200 in statuses and 429 in statuses, statuses
    assert statuses.index(429) >= 4, "the burst (four seconds' worth) passes first"
    for refused in (a for a in answers if a.status_code == 429):
        body = assert_problem(refused, 429)
        assert f"account {heavy.account_id} moved more than its {RATE:,} bytes a second" in body["detail"]
        assert 1 <= int(refused.headers["retry-after"]) <= 8

    # Meanwhile another account is served, commands and pages alike.
    small = {
        "OrderId": str(uuid.uuid4()),
        "CustomerName": "Small Buyer",
        "OrderLines": [{"ProductCode": "P", "Quantity": 1, "UnitPrice": "2.00"}],
    }
    placed = await budgeted.post("/commands/PlaceOrder", json=small, headers=light.headers)
    assert placed.status_code == 200, placed.text
    read = await budgeted.get(
        "/queries/GetOrders",
        params={"CustomerName": "Small Buyer", "ConsistentWith": placed.json()["ConsistencyToken"]},
        headers=light.headers,
    )
    assert read.status_code == 200 and len(read.json()["Items"]) == 1

    # Refused orders were never run; reads are charged too, once the account has paid its debt.
    accepted = {b["OrderId"] for b, a in zip(sent, answers, strict=True) if a.status_code == 200}
    stored = await pool.fetchval("SELECT count(*) FROM events WHERE account_id = $1", heavy.account_id)
    assert stored == len(accepted)
    refused = next(a for a in reversed(answers) if a.status_code == 429)
    await asyncio.sleep(int(refused.headers["retry-after"]) + 1)
    pages = 0
    while True:
        page = await budgeted.get(
            "/queries/GetOrders", params={"CustomerName": "Big Buyer", "Limit": "1000"}, headers=heavy.headers
        )
        if page.status_code == 429:
            break
        assert page.status_code == 200, page.text
        pages += 1
        assert pages < 20, "reading pages never cost the account anything"
    assert_problem(page, 429)


async def test_pages_read_at_once_are_charged_before_the_next_is_admitted(
    budgeted: httpx.AsyncClient,
) -> None:
    """Twelve page reads sent at once: each is admitted only once the ones before it are charged,
    so the account gets its burst and what refilled meanwhile, and 429s, not twelve pages."""
    reader = await onboard(budgeted, "Reader")
    for _ in range(5):  # about 320 kB of orders: one page nearly spends the 400 kB burst
        placed = await budgeted.post("/commands/PlaceOrder", json=big_order("Bulk"), headers=reader.headers)
        assert placed.status_code == 200, placed.text
    await asyncio.sleep(4.5)  # the burst back after the orders' own bytes
    started = time.monotonic()
    params = {"CustomerName": "Bulk", "Limit": "1000"}
    pages = await asyncio.gather(
        *(budgeted.get("/queries/GetOrders", params=params, headers=reader.headers) for _ in range(12))
    )
    elapsed = time.monotonic() - started
    statuses = [p.status_code for p in pages]
    assert set(statuses) == {200, 429}, statuses
    served = sum(len(p.content) for p in pages if p.status_code == 200)
    page = max(len(p.content) for p in pages if p.status_code == 200)
    # Admitted with something left, a page may take the account into debt by one page, no more.
    assert served <= 4 * RATE + RATE * elapsed + page, (served, elapsed, statuses)
    assert statuses.count(200) < 12


async def test_a_body_without_length_is_charged_as_the_largest(budgeted: httpx.AsyncClient) -> None:
    chunked = await onboard(budgeted, "Chunked")
    order = {
        "OrderId": str(uuid.uuid4()),
        "CustomerName": "C",
        "OrderLines": [{"ProductCode": "P", "Quantity": 1, "UnitPrice": "1.00"}],
    }

    async def chunks() -> AsyncIterator[bytes]:
        yield json.dumps(order).encode()

    first = await budgeted.post("/commands/PlaceOrder", content=chunks(), headers=chunked.headers)
    assert first.status_code == 200, first.text
    refused = await budgeted.post("/commands/PlaceOrder", json=big_order("C"), headers=chunked.headers)
    assert_problem(refused, 429)
