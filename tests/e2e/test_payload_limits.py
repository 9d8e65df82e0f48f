"""Payload limits from the model, over HTTP: a record list holds at most its declared number of
items (more is 422 naming the field and the limit, and nothing is stored), and a list query's page
stops before its answer passes the byte limit, its Next going on from the first item left out."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from commands.erp_model.common import MAX_ADDRESSES, MAX_ORDER_LINES
from core.settings import Settings
from queries.paging import MAX_PAGE_BYTES
from tests.conftest import Tenant, onboard, own_api
from tests.e2e.test_http_contract import assert_problem, stored_events


def lines(count: int, code_length: int = 8) -> list[dict[str, Any]]:
    return [{"ProductCode": f"{n:0{code_length}d}", "Quantity": 1, "UnitPrice": "1.00"} for n in range(count)]


def order(customer: str, count: int, code_length: int = 8) -> dict[str, Any]:
    return {"OrderId": str(uuid.uuid4()), "CustomerName": customer, "OrderLines": lines(count, code_length)}


@pytest.fixture(scope="module")
async def unlimited(settings: Settings, worker: None) -> AsyncIterator[httpx.AsyncClient]:
    """An API of its own with no command rate limit: the pages below need 25 orders of 1,000 lines
    at once, each of which costs 128 commands of an account's 100 a second
    (tests/e2e/test_rate_limit.py holds the limit)."""
    async with own_api(settings, command_rate=0) as client:
        yield client


async def test_an_order_with_more_lines_than_the_model_allows_is_refused_and_stores_nothing(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool[Any]
) -> None:
    before = await stored_events(pool, tenant.account_id)
    refused = await http.post(
        "/commands/PlaceOrder", json=order("Too Many", MAX_ORDER_LINES + 1), headers=tenant.headers
    )
    detail = assert_problem(refused, 422)["detail"]
    assert "OrderLines" in detail and str(MAX_ORDER_LINES) in detail, detail
    assert await stored_events(pool, tenant.account_id) == before

    accepted = await http.post(
        "/commands/PlaceOrder", json=order("Just Enough", MAX_ORDER_LINES), headers=tenant.headers
    )
    assert accepted.status_code == 200, accepted.text


async def test_the_openapi_document_declares_the_most_order_lines(http: httpx.AsyncClient) -> None:
    document = (await http.get("/schema/openapi.json")).json()
    schemas = document["components"]["schemas"]
    order_lines = schemas["PlaceOrder"]["properties"]["OrderLines"]
    assert order_lines["maxItems"] == MAX_ORDER_LINES, order_lines
    assert order_lines["minItems"] == 1, order_lines


async def test_a_party_holds_at_most_its_declared_addresses(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool[Any]
) -> None:
    """Each ChangeAddress adds an address: once a party has MAX_ADDRESSES, one more is refused."""
    person = str(uuid.uuid4())
    registered = await http.post(
        "/commands/RegisterPerson", json={"PersonId": person, "Name": "Moves Often"}, headers=tenant.headers
    )
    assert registered.status_code == 200, registered.text
    address = {"Kind": "Home", "Street": "1 Main St", "City": "Springfield", "Country": "US"}
    for n in range(MAX_ADDRESSES):
        changed = await http.post(
            "/commands/ChangeAddress",
            json={"PartyId": person, "Address": {**address, "Street": f"{n} Main St"}},
            headers=tenant.headers,
        )
        assert changed.status_code == 200, changed.text
    before = await stored_events(pool, tenant.account_id)
    refused = await http.post(
        "/commands/ChangeAddress", json={"PartyId": person, "Address": address}, headers=tenant.headers
    )
    detail = assert_problem(refused, 422)["detail"]
    assert "Addresses" in detail and str(MAX_ADDRESSES) in detail, detail
    assert await stored_events(pool, tenant.account_id) == before


async def test_a_page_of_big_orders_stops_at_the_byte_limit_and_paging_sends_each_order_once(
    unlimited: httpx.AsyncClient,
) -> None:
    """Orders of 1,000 lines with long product codes (about 130 KB each as the query answers them):
    asked for 100 a page, each page holds what fits in MAX_PAGE_BYTES, and following Next gives
    every order exactly once, in order."""
    tenant = await onboard(unlimited, "Big Pages")
    placed = []
    token = ""
    for _ in range(25):
        body = order("Page Turner", MAX_ORDER_LINES, code_length=60)
        response = await unlimited.post("/commands/PlaceOrder", json=body, headers=tenant.headers)
        assert response.status_code == 200, response.text
        placed.append(body["OrderId"])
        token = response.json()["ConsistencyToken"]

    seen: list[str] = []
    sizes: list[tuple[int, int]] = []
    params: dict[str, Any] = {"CustomerName": "Page Turner", "Limit": 100, "ConsistentWith": token}
    while True:
        response = await unlimited.get("/queries/GetOrders", params=params, headers=tenant.headers)
        assert response.status_code == 200, response.text
        assert len(response.content) <= MAX_PAGE_BYTES, len(response.content)
        body = response.json()
        assert body["Items"], "a page is never empty while orders remain"
        seen.extend(item["OrderId"] for item in body["Items"])
        sizes.append((len(body["Items"]), len(response.content)))
        if "Next" not in body:
            break
        assert len(body["Items"]) < 100, "this page stopped for its bytes, not its Limit"
        params = {"CustomerName": "Page Turner", "Limit": 100, "After": body["Next"]}
    assert seen == placed, sizes
    assert len(sizes) >= 3, sizes
