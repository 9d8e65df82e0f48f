"""The per-account command rate limit over HTTP: a noisy account gets 429s, a quiet one is served."""

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
import redis.asyncio as redis
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from core.settings import Settings
from tests.conftest import Tenant, metric_points, onboard, own_api
from tests.e2e.test_http_contract import assert_problem

RATE, BURST = 2, 10
"""10 commands in any 5 s: the whole test runs within one window, so nothing refills meanwhile."""


@pytest.fixture(scope="module")
async def limited(settings: Settings, worker: None) -> AsyncIterator[httpx.AsyncClient]:
    """An API of its own with a small limit, on the session's database, worker and Temporal."""
    async with own_api(settings, command_rate=RATE, command_burst=BURST) as client:
        yield client


@pytest.fixture
async def neighbours(limited: httpx.AsyncClient) -> AsyncIterator[tuple[Tenant, Tenant]]:
    """Two fresh accounts (so their Redis keys are this run's alone), keys deleted afterwards."""
    tenants = (await onboard(limited, "Noisy"), await onboard(limited, "Quiet"))
    yield tenants
    client = redis.from_url(Settings().redis_url)
    for tenant in tenants:
        keys = [key async for key in client.scan_iter(match=f"*{tenant.account_id}*")]
        if keys:
            await client.delete(*keys)
    await client.aclose()


def order(name: str) -> dict[str, Any]:
    return {
        "OrderId": str(uuid.uuid4()),
        "CustomerName": name,
        "OrderLines": [{"ProductCode": "P", "Quantity": 1, "UnitPrice": "1.00"}],
    }


def refusals(reader: InMemoryMetricReader) -> int:
    return sum(point.value for point in metric_points(reader).get("erp.commands.limited", []))


async def test_a_noisy_account_gets_429s_while_a_quiet_one_is_served(
    limited: httpx.AsyncClient,
    neighbours: tuple[Tenant, Tenant],
    pool: asyncpg.Pool[Any],
    metric_reader: InMemoryMetricReader,
) -> None:
    noisy, quiet = neighbours
    refused_before = refusals(metric_reader)
    loud = [order("Noisy Neighbour") for _ in range(40)]
    calm = [order("Quiet Neighbour") for _ in range(5)]

    def send(tenant: Tenant, body: dict[str, Any]) -> Any:
        return limited.post("/commands/PlaceOrder", json=body, headers=tenant.headers)

    # From the start of a window, so that the flood, its refusals and the customisation all fall in it.
    await asyncio.sleep(BURST / RATE - time.time() % (BURST / RATE))
    started = time.monotonic()
    answers = await asyncio.gather(*(send(noisy, b) for b in loud), *(send(quiet, b) for b in calm))
    # Still within the window, a customisation (a write like a command) is refused as well.
    customised = await limited.post(
        "/customisations",
        json={"Element": "Order", "Attribute": "Colour", "Type": "string"},
        headers=noisy.headers,
    )
    assert time.monotonic() - started < BURST / RATE, "too slow for the test's window; nothing proven"
    noisy_answers, quiet_answers = answers[: len(loud)], answers[len(loud) :]

    assert [a.status_code for a in quiet_answers] == [200] * len(calm)
    statuses = [a.status_code for a in noisy_answers]
    assert sorted(set(statuses)) == [200, 429], statuses
    assert statuses.count(200) == BURST
    for answer in [*(a for a in noisy_answers if a.status_code == 429), customised]:
        body = assert_problem(answer, 429)
        assert f"account {noisy.account_id} is over its limit of {RATE} commands per second" in body["detail"]
        assert f"(burst {BURST})" in body["detail"]
        # A sliding window: the burst's window, and what the previous one still weighs then.
        assert 1 <= int(answer.headers["retry-after"]) <= BURST // RATE + 1
    assert refusals(metric_reader) - refused_before == statuses.count(429) + 1

    # The refused commands changed nothing: the read model holds exactly the accepted orders.
    accepted = {b["OrderId"] for b, a in zip(loud, noisy_answers, strict=True) if a.status_code == 200}
    tokens = [a.json()["ConsistencyToken"] for a in noisy_answers if a.status_code == 200]
    latest = max(tokens, key=lambda token: int(token.split(":")[1]))
    read = await limited.get(
        "/queries/GetOrders",
        params={"CustomerName": "Noisy Neighbour", "ConsistentWith": latest},
        headers=noisy.headers,
    )
    assert read.status_code == 200, read.text
    assert {item["OrderId"] for item in read.json()["Items"]} == accepted
    stored = await pool.fetchval("SELECT count(*) FROM events WHERE account_id = $1", noisy.account_id)
    assert stored == len(accepted)
    definitions = await limited.get("/customisations", headers=noisy.headers)
    assert definitions.status_code == 200 and definitions.json() == []


async def test_a_big_body_costs_one_command_per_started_kib(
    limited: httpx.AsyncClient, neighbours: tuple[Tenant, Tenant], pool: asyncpg.Pool[Any]
) -> None:
    """An order of about 3.5 KiB costs 4 commands: two fit the burst of 10, a third is refused
    (saying how bodies count) and stores nothing, and a one-line order still fits."""
    heavy, _ = neighbours
    big = order("Big Spender")
    big["OrderLines"] = [{"ProductCode": f"P-{n:03d}", "Quantity": 1, "UnitPrice": "1.00"} for n in range(70)]
    size = len(json.dumps(big, separators=(",", ":")))
    assert 3 * 1024 < size <= 4 * 1024, size
    await asyncio.sleep(BURST / RATE - time.time() % (BURST / RATE))
    started = time.monotonic()
    statuses = []
    for body in [big, {**big, "OrderId": str(uuid.uuid4())}, {**big, "OrderId": str(uuid.uuid4())}]:
        sent = await limited.post(
            "/commands/PlaceOrder",
            content=json.dumps(body, separators=(",", ":")),
            headers={**heavy.headers, "Content-Type": "application/json"},
        )
        statuses.append(sent.status_code)
        last = sent
    small = await limited.post("/commands/PlaceOrder", json=order("Small"), headers=heavy.headers)
    assert time.monotonic() - started < BURST / RATE, "too slow for the test's window; nothing proven"
    assert statuses == [200, 200, 429], statuses
    assert "a body counts as one command per started 1,024 bytes" in assert_problem(last, 429)["detail"]
    assert small.status_code == 200, small.text
    stored = await pool.fetchval("SELECT count(*) FROM events WHERE account_id = $1", heavy.account_id)
    assert stored == 3


async def test_a_chunked_body_costs_one_command_and_the_rest_once_read(
    limited: httpx.AsyncClient, neighbours: tuple[Tenant, Tenant]
) -> None:
    """Sent without Content-Length, a body's size is unknown until it is read: it costs one command
    up front and the rest after. A chunked one-line order costs one; a chunked order of about
    3.5 KiB costs four, so six one-line orders fit the burst of 10 after it, and a seventh does not."""
    chunked, _ = neighbours

    async def send_chunked(body: dict[str, Any]) -> httpx.Response:
        async def chunks() -> Any:
            yield json.dumps(body, separators=(",", ":")).encode()

        headers = {**chunked.headers, "Content-Type": "application/json"}
        return await limited.post("/commands/PlaceOrder", content=chunks(), headers=headers)

    big = order("Chunked")
    big["OrderLines"] = [{"ProductCode": f"P-{n:03d}", "Quantity": 1, "UnitPrice": "1.00"} for n in range(70)]
    await asyncio.sleep(BURST / RATE - time.time() % (BURST / RATE))
    started = time.monotonic()
    first = await send_chunked(big)
    assert first.status_code == 200, first.text
    statuses = [(await send_chunked(order("Chunked"))).status_code for _ in range(7)]
    assert time.monotonic() - started < BURST / RATE, "too slow for the test's window; nothing proven"
    assert statuses == [200] * 6 + [429], statuses
