"""The HTTP contract of DESIGN.md, end to end: every endpoint, its successes and its errors.

Every error must be `application/problem+json` with a human-readable `detail`,
and a refused command must store nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest

from commands.model import MONEY_PATTERN
from commands.registry import COMMANDS
from tests.conftest import OPERATOR_TOKEN, Tenant, onboard

Headers = dict[str, str]

BAD_CREDENTIALS: list[tuple[str, Headers]] = [
    ("no Authorization header", {}),
    ("Basic scheme", {"Authorization": "Basic dXNlcjpwYXNz"}),
    ("Token scheme", {"Authorization": "Token abc"}),
    ("Bearer without a key", {"Authorization": "Bearer"}),
    ("unknown key", {"Authorization": f"Bearer erp_{uuid.uuid4().hex}"}),
    ("operator token", {"Authorization": f"Bearer {OPERATOR_TOKEN}"}),
]


# ---------------------------------------------------------------------------------------------
# helpers


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """`response` is a problem+json error with `status` and a human-readable detail."""
    assert response.status_code == status, f"{response.status_code}: {response.text[:500]}"
    media_type = response.headers.get("content-type", "").split(";")[0].strip()
    assert media_type == "application/problem+json", response.headers.get("content-type")
    body = response.json()
    assert isinstance(body, dict), body
    detail = body.get("detail")
    assert isinstance(detail, str) and detail.strip(), body
    assert body.get("status") == status, body
    return body


def order_body(customer: str = "Ada Lovelace", order_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "OrderId": order_id or str(uuid.uuid4()),
        "CustomerName": customer,
        "OrderLines": [
            {"ProductCode": "KB-1", "Quantity": 2, "UnitPrice": "10.00"},
            {"ProductCode": "MS-2", "Quantity": 1, "UnitPrice": "5.50"},
        ],
        **extra,
    }


async def place(
    http: httpx.AsyncClient, tenant: Tenant, customer: str = "Ada Lovelace", **extra: Any
) -> httpx.Response:
    return await http.post("/commands/PlaceOrder", json=order_body(customer, **extra), headers=tenant.headers)


async def placed(http: httpx.AsyncClient, tenant: Tenant, customer: str = "Ada Lovelace") -> dict[str, Any]:
    response = await place(http, tenant, customer)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def cancel(http: httpx.AsyncClient, tenant: Tenant, order_id: str, **extra: Any) -> httpx.Response:
    return await http.post(
        "/commands/CancelOrder",
        json={"OrderId": order_id, "Reason": "changed my mind", **extra},
        headers=tenant.headers,
    )


def order_id_of(result: dict[str, Any]) -> str:
    stream_id: str = result["StreamId"]
    assert stream_id.startswith("Order-")
    return stream_id.removeprefix("Order-")


async def stored_events(pool: asyncpg.Pool[Any], account_id: UUID) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM events WHERE account_id = $1", account_id))


async def all_events(pool: asyncpg.Pool[Any]) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM events"))


async def all_accounts(pool: asyncpg.Pool[Any]) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM accounts"))


async def get_orders(
    http: httpx.AsyncClient, tenant: Tenant, customer: str, token: str | None = None
) -> list[dict[str, Any]]:
    params = {"CustomerName": customer}
    if token is not None:
        params["ConsistentWith"] = token
    response = await http.get("/queries/GetOrders", params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["Items"]
    return items


async def eventually(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------------------------------------
# POST /accounts, GET /accounts/{AccountId}


async def test_create_account_returns_its_id_key_and_active_status(
    http: httpx.AsyncClient, operator: Headers
) -> None:
    created = await http.post("/accounts", json={"Name": "Acme Ltd"}, headers=operator)
    assert created.status_code == 201, created.text
    assert created.headers["content-type"].startswith("application/json")
    body = created.json()
    assert set(body) == {"AccountId", "ApiKey", "Status"}
    account_id = UUID(body["AccountId"])
    assert isinstance(body["ApiKey"], str) and body["ApiKey"]
    assert body["Status"] == "Active"

    shown = await http.get(f"/accounts/{account_id}", headers=operator)
    assert shown.status_code == 200, shown.text
    assert shown.json() == {"AccountId": str(account_id), "Name": "Acme Ltd", "Status": "Active"}

    # The new key works at once and speaks for that account.
    tenant = Tenant(account_id, body["ApiKey"])
    assert await get_orders(http, tenant, "Nobody") == []


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic x"}]
)
async def test_create_account_needs_the_operator_token(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], headers: Headers
) -> None:
    before = await all_accounts(pool)
    response = await http.post("/accounts", json={"Name": "Intruder"}, headers=headers)
    assert_problem(response, 401)
    assert await all_accounts(pool) == before


async def test_a_tenant_key_is_not_the_operator_token(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool[Any]
) -> None:
    before = await all_accounts(pool)
    assert_problem(await http.post("/accounts", json={"Name": "Escalation"}, headers=tenant.headers), 401)
    assert_problem(await http.get(f"/accounts/{tenant.account_id}", headers=tenant.headers), 401)
    assert await all_accounts(pool) == before


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="missing Name"),
        pytest.param({"Name": ""}, id="empty Name"),
        pytest.param({"Name": "   "}, id="blank Name"),
        pytest.param({"Name": "Acme", "Plan": "Gold"}, id="unknown field"),
        pytest.param({"Name": "x" * 201}, id="Name too long"),
        pytest.param({"Name": 42}, id="Name not a string"),
        pytest.param({"name": "Acme"}, id="Name not PascalCase"),
        pytest.param(["Acme"], id="not an object"),
    ],
)
async def test_create_account_refuses_invalid_bodies(
    http: httpx.AsyncClient, operator: Headers, pool: asyncpg.Pool[Any], body: Any
) -> None:
    before = await all_accounts(pool)
    assert_problem(await http.post("/accounts", json=body, headers=operator), 422)
    assert await all_accounts(pool) == before


@pytest.mark.parametrize("content", [b"{", b"{'Name': 'Acme'}", b"Name=Acme"])
async def test_create_account_refuses_malformed_json(
    http: httpx.AsyncClient, operator: Headers, pool: asyncpg.Pool[Any], content: bytes
) -> None:
    before = await all_accounts(pool)
    response = await http.post(
        "/accounts", content=content, headers={**operator, "Content-Type": "application/json"}
    )
    assert_problem(response, 400)
    assert await all_accounts(pool) == before


async def test_show_account_errors(http: httpx.AsyncClient, operator: Headers, tenant: Tenant) -> None:
    assert_problem(await http.get(f"/accounts/{uuid.uuid4()}", headers=operator), 404)
    assert_problem(await http.get(f"/accounts/{tenant.account_id}"), 401)
    assert_problem(
        await http.get(f"/accounts/{tenant.account_id}", headers={"Authorization": "Bearer nope"}), 401
    )


# ---------------------------------------------------------------------------------------------
# POST /commands/{CommandName}: successes


async def test_place_order(http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool[Any]) -> None:
    order_id = str(uuid.uuid4())
    response = await http.post(
        "/commands/PlaceOrder", json=order_body("Grace Hopper", order_id), headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"StreamId", "Revision", "Positions", "ConsistencyToken"}
    assert body["StreamId"] == f"Order-{order_id}"
    assert body["Revision"] == 1
    assert body["Positions"] == {"Order": 1}
    assert body["ConsistencyToken"] == "Order:1"
    assert await stored_events(pool, tenant.account_id) == 1

    assert await get_orders(http, tenant, "Grace Hopper", body["ConsistencyToken"]) == [
        {
            "OrderId": order_id,
            "CustomerName": "Grace Hopper",
            "Status": "Placed",
            "Total": "25.50",
            "OrderLines": [
                {"ProductCode": "KB-1", "Quantity": 2, "UnitPrice": "10.00"},
                {"ProductCode": "MS-2", "Quantity": 1, "UnitPrice": "5.50"},
            ],
        }
    ]


async def test_placing_the_same_order_twice_is_refused(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool[Any]
) -> None:
    order_id = str(uuid.uuid4())
    assert (await place(http, tenant, order_id=order_id)).status_code == 200
    assert_problem(await place(http, tenant, order_id=order_id), 422)
    assert await stored_events(pool, tenant.account_id) == 1


async def test_cancel_order_then_cancel_again(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool[Any]
) -> None:
    first = await placed(http, tenant, "Cancelling Customer")
    order_id = order_id_of(first)

    cancelled = await cancel(http, tenant, order_id)
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["StreamId"] == f"Order-{order_id}"
    assert body["Revision"] == 2
    assert body["Positions"] == {"Order": 2}
    assert body["ConsistencyToken"] == "Order:2"
    assert await stored_events(pool, tenant.account_id) == 2

    again = assert_problem(await cancel(http, tenant, order_id), 422)
    assert "Cancelled" in again["detail"]
    assert await stored_events(pool, tenant.account_id) == 2

    items = await get_orders(http, tenant, "Cancelling Customer", body["ConsistencyToken"])
    assert [(i["OrderId"], i["Status"]) for i in items] == [(order_id, "Cancelled")]


async def test_cancel_an_unknown_order(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool[Any]
) -> None:
    assert_problem(await cancel(http, tenant, str(uuid.uuid4())), 404)
    assert await stored_events(pool, tenant.account_id) == 0


@pytest.mark.parametrize("name", ["ShipOrder", "placeorder", "PlaceOrders", "Place%20Order"])
async def test_unknown_command(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool[Any], name: str
) -> None:
    assert_problem(await http.post(f"/commands/{name}", json=order_body(), headers=tenant.headers), 404)
    assert await stored_events(pool, tenant.account_id) == 0


# ---------------------------------------------------------------------------------------------
# POST /commands/{CommandName}: refusals


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty body"),
        pytest.param(b"{", id="truncated"),
        pytest.param(b"{'OrderId': 1}", id="single quotes"),
        pytest.param(b"not json", id="text"),
        pytest.param(b'{"OrderId": "x",}', id="trailing comma"),
    ],
)
async def test_malformed_json_is_400(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool[Any], content: bytes
) -> None:
    response = await http.post(
        "/commands/PlaceOrder",
        content=content,
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert_problem(response, 400)
    assert await stored_events(pool, tenant.account_id) == 0


_MISSING = object()
_PLACED = object()


def _line(**changes: Any) -> dict[str, Any]:
    line: dict[str, Any] = {"ProductCode": "KB-1", "Quantity": 1, "UnitPrice": "1.00"}
    line.update(changes)
    return {k: v for k, v in line.items() if v is not _MISSING}


def _order(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "OrderId": str(uuid.uuid4()),
        "CustomerName": "Invalid Ivan",
        "OrderLines": [_line()],
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not _MISSING}


INVALID_PLACE_ORDERS: list[Any] = [
    pytest.param(_order(OrderId=_MISSING), id="missing OrderId"),
    pytest.param(_order(CustomerName=_MISSING), id="missing CustomerName"),
    pytest.param(_order(OrderLines=_MISSING), id="missing OrderLines"),
    pytest.param(_order(OrderId="not-a-uuid"), id="invalid OrderId"),
    pytest.param(_order(OrderId=12345), id="OrderId not a string"),
    pytest.param(_order(CustomerName=42), id="CustomerName not a string"),
    pytest.param(_order(CustomerName=""), id="empty CustomerName"),
    pytest.param(_order(CustomerName="x" * 201), id="CustomerName too long"),
    pytest.param(_order(OrderLines=[]), id="empty OrderLines"),
    pytest.param(_order(OrderLines=_line()), id="OrderLines not a list"),
    pytest.param(_order(Discount="5.00"), id="unknown field"),
    pytest.param(_order(customerName="x"), id="unknown camelCase field"),
    pytest.param(_order(OrderLines=[_line(Colour="red")]), id="unknown line field"),
    pytest.param(_order(OrderLines=[_line(ProductCode=_MISSING)]), id="missing ProductCode"),
    pytest.param(_order(OrderLines=[_line(Quantity=_MISSING)]), id="missing Quantity"),
    pytest.param(_order(OrderLines=[_line(UnitPrice=_MISSING)]), id="missing UnitPrice"),
    pytest.param(_order(OrderLines=[_line(ProductCode="")]), id="empty ProductCode"),
    pytest.param(_order(OrderLines=[_line(Quantity=0)]), id="zero Quantity"),
    pytest.param(_order(OrderLines=[_line(Quantity=-1)]), id="negative Quantity"),
    pytest.param(_order(OrderLines=[_line(Quantity=1.5)]), id="fractional Quantity"),
    pytest.param(_order(OrderLines=[_line(Quantity="2")]), id="Quantity as a string"),
    pytest.param(_order(OrderLines=[_line(UnitPrice="-1.00")]), id="negative UnitPrice"),
    pytest.param(_order(OrderLines=[_line(UnitPrice="-0.01")]), id="UnitPrice just below zero"),
    pytest.param(_order(OrderLines=[_line(UnitPrice="1.001")]), id="UnitPrice with 3 decimals"),
    pytest.param(_order(OrderLines=[_line(UnitPrice="abc")]), id="UnitPrice not a number"),
    pytest.param(_order(OrderLines=[_line(UnitPrice="NaN")]), id="UnitPrice NaN"),
    pytest.param(_order(OrderLines=[_line(UnitPrice="Infinity")]), id="UnitPrice infinite"),
    pytest.param(_order(ExpectedRevision=-1), id="negative ExpectedRevision"),
    pytest.param(_order(ExpectedRevision="1"), id="ExpectedRevision as a string"),
    pytest.param([_order()], id="array instead of object"),
    pytest.param("PlaceOrder", id="string instead of object"),
    pytest.param(None, id="null instead of object"),
]


@pytest.mark.parametrize("body", INVALID_PLACE_ORDERS)
async def test_invalid_place_order_is_422_and_stores_nothing(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool[Any], body: Any
) -> None:
    response = await http.post(
        "/commands/PlaceOrder", content=json.dumps(body).encode(), headers=tenant.headers
    )
    assert_problem(response, 422)
    assert await stored_events(pool, tenant.account_id) == 0


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"Reason": "x"}, id="missing OrderId"),
        pytest.param({"OrderId": "nope", "Reason": "x"}, id="invalid OrderId"),
        pytest.param({"OrderId": _PLACED, "Reason": ""}, id="empty Reason"),
        pytest.param({"OrderId": _PLACED}, id="missing Reason"),
        pytest.param({"OrderId": _PLACED, "Reason": 5}, id="Reason not a string"),
        pytest.param({"OrderId": _PLACED, "Reason": "x", "Refund": True}, id="unknown field"),
    ],
)
async def test_invalid_cancel_order_is_422_and_stores_nothing(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool[Any], body: dict[str, Any]
) -> None:
    order_id = order_id_of(await placed(http, tenant))
    payload = {k: order_id if v is _PLACED else v for k, v in body.items()}
    response = await http.post("/commands/CancelOrder", json=payload, headers=tenant.headers)
    assert_problem(response, 422)
    assert await stored_events(pool, tenant.account_id) == 1


async def test_a_body_over_one_mebibyte_is_413(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool[Any]
) -> None:
    huge = json.dumps(order_body("x" * (1024 * 1024 + 1))).encode()
    assert len(huge) > 1024 * 1024
    response = await http.post(
        "/commands/PlaceOrder", content=huge, headers={**tenant.headers, "Content-Type": "application/json"}
    )
    assert_problem(response, 413)
    assert await stored_events(pool, tenant.account_id) == 0

    # A large body under the limit is accepted (a valid order of the most lines allowed).
    lines = [{"ProductCode": f"P{i:06d}", "Quantity": 1, "UnitPrice": "0.01"} for i in range(1000)]
    big = json.dumps({"OrderId": str(uuid.uuid4()), "CustomerName": "Big", "OrderLines": lines}).encode()
    assert len(big) < 1024 * 1024
    ok = await http.post(
        "/commands/PlaceOrder", content=big, headers={**tenant.headers, "Content-Type": "application/json"}
    )
    assert ok.status_code == 200, ok.text
    assert await stored_events(pool, tenant.account_id) == 1


async def test_expected_revision(http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool[Any]) -> None:
    # A new stream is at revision 0.
    created = await place(http, tenant, ExpectedRevision=0)
    assert created.status_code == 200, created.text
    assert created.json()["Revision"] == 1
    order_id = order_id_of(created.json())

    stale = assert_problem(await cancel(http, tenant, order_id, ExpectedRevision=0), 409)
    assert stale["title"] == "Conflict"
    ahead = assert_problem(await cancel(http, tenant, order_id, ExpectedRevision=7), 409)
    assert ahead["detail"]
    assert await stored_events(pool, tenant.account_id) == 1

    current = await cancel(http, tenant, order_id, ExpectedRevision=1)
    assert current.status_code == 200, current.text
    assert current.json()["Revision"] == 2
    assert await stored_events(pool, tenant.account_id) == 2

    # Placing on an existing stream with a stale revision is a conflict, not a business refusal.
    assert_problem(await place(http, tenant, order_id=order_id, ExpectedRevision=0), 409)
    assert await stored_events(pool, tenant.account_id) == 2


async def test_idempotency_key_replays_the_identical_result(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool[Any]
) -> None:
    body = order_body("Idempotent Ida")
    headers = {**tenant.headers, "Idempotency-Key": f"retry-{uuid.uuid4()}"}
    first = await http.post("/commands/PlaceOrder", json=body, headers=headers)
    second = await http.post("/commands/PlaceOrder", json=body, headers=headers)
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert second.json() == first.json()
    assert second.content == first.content
    assert await stored_events(pool, tenant.account_id) == 1

    # A later command moves the stream on; the retry still answers what the first try did.
    assert (await cancel(http, tenant, body["OrderId"])).status_code == 200
    third = await http.post("/commands/PlaceOrder", json=body, headers=headers)
    assert third.status_code == 200, third.text
    assert third.content == first.content
    assert await stored_events(pool, tenant.account_id) == 2


async def test_concurrent_retries_with_one_idempotency_key_store_one_event(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool[Any]
) -> None:
    body = order_body("Concurrent Carl")
    headers = {**tenant.headers, "Idempotency-Key": str(uuid.uuid4())}
    responses = await asyncio.gather(
        *(http.post("/commands/PlaceOrder", json=body, headers=headers) for _ in range(8))
    )
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    assert len({r.content for r in responses}) == 1
    assert await stored_events(pool, tenant.account_id) == 1


async def test_idempotency_key_reused_for_another_request(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool[Any]
) -> None:
    key = f"key-{uuid.uuid4()}"
    headers = {**tenant.headers, "Idempotency-Key": key}
    body = order_body("Reused Rita")
    first = await http.post("/commands/PlaceOrder", json=body, headers=headers)
    assert first.status_code == 200, first.text

    other_payload = {**body, "CustomerName": "Someone Else"}
    assert_problem(await http.post("/commands/PlaceOrder", json=other_payload, headers=headers), 422)
    other_command = {"OrderId": body["OrderId"], "Reason": "x"}
    assert_problem(await http.post("/commands/CancelOrder", json=other_command, headers=headers), 422)
    assert await stored_events(pool, tenant.account_id) == 1


async def test_an_idempotency_key_is_compared_by_its_exact_text(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool[Any]
) -> None:
    """A key is opaque: a UUID, the same upper-cased and in braces are three keys, three commands."""
    key = str(uuid.uuid4())
    spellings = [key, key.upper(), f"{{{key}}}"]
    bodies = [order_body(f"Spelling {n}") for n in range(len(spellings))]
    answers = []
    for spelling, body in zip(spellings, bodies, strict=True):
        response = await http.post(
            "/commands/PlaceOrder", json=body, headers={**tenant.headers, "Idempotency-Key": spelling}
        )
        assert response.status_code == 200, (spelling, response.text)
        assert response.json()["StreamId"] == f"Order-{body['OrderId']}"
        answers.append(response.content)
    assert await stored_events(pool, tenant.account_id) == 3

    # Each retried with its own key gets its own first answer.
    for spelling, body, answer in zip(spellings, bodies, answers, strict=True):
        retried = await http.post(
            "/commands/PlaceOrder", json=body, headers={**tenant.headers, "Idempotency-Key": spelling}
        )
        assert (retried.status_code, retried.content) == (200, answer), spelling
    assert await stored_events(pool, tenant.account_id) == 3


async def test_idempotency_key_length(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool[Any]
) -> None:
    too_long = {**tenant.headers, "Idempotency-Key": "k" * 201}
    assert_problem(await http.post("/commands/PlaceOrder", json=order_body(), headers=too_long), 422)
    assert await stored_events(pool, tenant.account_id) == 0

    longest = {**tenant.headers, "Idempotency-Key": "k" * 200}
    response = await http.post("/commands/PlaceOrder", json=order_body(), headers=longest)
    assert response.status_code == 200, response.text
    assert await stored_events(pool, tenant.account_id) == 1


async def test_idempotency_keys_are_per_account(http: httpx.AsyncClient, pool: asyncpg.Pool[Any]) -> None:
    a, b = await onboard(http, "Keys A"), await onboard(http, "Keys B")
    key = str(uuid.uuid4())
    body_a, body_b = order_body("Key Customer A"), order_body("Key Customer B")
    ra = await http.post("/commands/PlaceOrder", json=body_a, headers={**a.headers, "Idempotency-Key": key})
    rb = await http.post("/commands/PlaceOrder", json=body_b, headers={**b.headers, "Idempotency-Key": key})
    assert ra.status_code == rb.status_code == 200, (ra.text, rb.text)
    assert rb.json()["StreamId"] == f"Order-{body_b['OrderId']}"
    assert await stored_events(pool, a.account_id) == await stored_events(pool, b.account_id) == 1


# ---------------------------------------------------------------------------------------------
# Authentication of tenant endpoints


TENANT_ENDPOINTS: list[tuple[str, str]] = [
    ("POST", "/commands/PlaceOrder"),
    ("POST", "/commands/NoSuchCommand"),
    ("GET", "/queries/GetOrders?CustomerName=Ada"),
    ("GET", "/queries/NoSuchQuery"),
    ("GET", "/notifications"),
]


@pytest.mark.parametrize(("method", "path"), TENANT_ENDPOINTS)
@pytest.mark.parametrize(("why", "headers"), BAD_CREDENTIALS, ids=[w for w, _ in BAD_CREDENTIALS])
async def test_tenant_endpoints_need_a_valid_api_key(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool[Any],
    method: str,
    path: str,
    why: str,
    headers: Headers,
) -> None:
    before = await all_events(pool)
    kwargs: dict[str, Any] = {"json": order_body()} if method == "POST" else {}
    response = await asyncio.wait_for(http.request(method, path, headers=headers, **kwargs), 10)
    assert_problem(response, 401)
    assert response.headers.get("www-authenticate", "").lower().startswith("bearer"), response.headers
    assert await all_events(pool) == before


# ---------------------------------------------------------------------------------------------
# Cross-tenant isolation


async def test_tenants_cannot_see_or_change_each_others_orders(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    a, b = await onboard(http, "Isolated A"), await onboard(http, "Isolated B")
    a_placed = await placed(http, a, "Shared Name")
    a_order = order_id_of(a_placed)
    a_token = a_placed["ConsistencyToken"]
    assert [i["OrderId"] for i in await get_orders(http, a, "Shared Name", a_token)] == [a_order]

    # B has its own order (another customer) so its token is as far as A's.
    b_placed = await placed(http, b, "Only B's Customer")
    b_token = b_placed["ConsistencyToken"]
    assert b_token == a_token

    assert await get_orders(http, b, "Shared Name") == []
    assert await get_orders(http, b, "Shared Name", b_token) == []
    assert await get_orders(http, b, "Shared Name", a_token) == []
    assert await get_orders(http, a, "Only B's Customer", a_token) == []

    # B cannot cancel A's order: for B it does not exist.
    assert_problem(await cancel(http, b, a_order), 404)
    assert_problem(await cancel(http, b, a_order, ExpectedRevision=1), 404)
    # Nor does A's order id block B from using it for an order of its own.
    mine = await place(http, b, "Only B's Customer", order_id=a_order)
    assert mine.status_code == 200, mine.text
    assert mine.json()["Revision"] == 1

    assert await stored_events(pool, a.account_id) == 1
    assert await stored_events(pool, b.account_id) == 2
    a_items = await get_orders(http, a, "Shared Name", a_token)
    assert [(i["OrderId"], i["Status"]) for i in a_items] == [(a_order, "Placed")]
    b_items = await get_orders(http, b, "Only B's Customer", mine.json()["ConsistencyToken"])
    assert sorted(i["OrderId"] for i in b_items) == sorted([order_id_of(b_placed), a_order])


# ---------------------------------------------------------------------------------------------
# GET /queries/{QueryName}


async def test_query_without_orders_returns_no_items(http: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await http.get("/queries/GetOrders", params={"CustomerName": "Nobody"}, headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"Items": []}


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({}, id="missing CustomerName"),
        pytest.param({"CustomerName": ""}, id="empty CustomerName"),
        pytest.param({"CustomerName": "x" * 201}, id="CustomerName too long"),
        pytest.param({"CustomerName": "Ada", "Colour": "red"}, id="unknown parameter"),
        pytest.param({"customerName": "Ada"}, id="camelCase parameter"),
    ],
)
async def test_query_with_invalid_parameters_is_422(
    http: httpx.AsyncClient, tenant: Tenant, params: dict[str, str]
) -> None:
    assert_problem(await http.get("/queries/GetOrders", params=params, headers=tenant.headers), 422)


@pytest.mark.parametrize("name", ["GetOrder", "getorders", "GetInvoices"])
async def test_unknown_query_is_404(http: httpx.AsyncClient, tenant: Tenant, name: str) -> None:
    response = await http.get(f"/queries/{name}", params={"CustomerName": "Ada"}, headers=tenant.headers)
    assert_problem(response, 404)


@pytest.mark.parametrize(
    "token", ["", "garbage", "Order", "Order:", "Order:-1", "Order:abc", ":5", "Order:1;"]
)
async def test_query_with_a_bad_consistency_token_is_422(
    http: httpx.AsyncClient, tenant: Tenant, token: str
) -> None:
    params = {"CustomerName": "Ada", "ConsistentWith": token}
    assert_problem(await http.get("/queries/GetOrders", params=params, headers=tenant.headers), 422)


@pytest.mark.parametrize("seconds", ["31", "30.5", "-1", "-0.1", "abc", "", "nan", "inf", "1e9"])
async def test_query_with_a_timeout_out_of_range_is_422(
    http: httpx.AsyncClient, tenant: Tenant, seconds: str
) -> None:
    for params in (
        {"CustomerName": "Ada", "Timeout": seconds},
        {"CustomerName": "Ada", "ConsistentWith": "Order:1", "Timeout": seconds},
    ):
        started = time.monotonic()
        assert_problem(await http.get("/queries/GetOrders", params=params, headers=tenant.headers), 422)
        assert time.monotonic() - started < 5


async def test_query_timeouts_in_range_are_accepted(http: httpx.AsyncClient, tenant: Tenant) -> None:
    token = (await placed(http, tenant, "Timely Tim"))["ConsistencyToken"]
    for seconds in ("30", "0", "0.5", "10"):
        params = {"CustomerName": "Timely Tim", "ConsistentWith": token, "Timeout": seconds}
        if seconds == "0":
            # With no time to wait the read model must already be there: wait first.
            await get_orders(http, tenant, "Timely Tim", token)
        response = await http.get("/queries/GetOrders", params=params, headers=tenant.headers)
        assert response.status_code == 200, (seconds, response.text)
        assert len(response.json()["Items"]) == 1


async def test_a_consistency_wait_that_times_out_is_503_with_retry_after(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    params = {"CustomerName": "Ada", "ConsistentWith": "Order:999999", "Timeout": "0.5"}
    started = time.monotonic()
    response = await http.get("/queries/GetOrders", params=params, headers=tenant.headers)
    elapsed = time.monotonic() - started
    assert_problem(response, 503)
    assert response.headers.get("retry-after", "").strip().isdigit(), response.headers
    assert 0.4 <= elapsed < 5, elapsed


async def test_a_token_for_stream_types_the_query_does_not_read_does_not_wait(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    params = {"CustomerName": "Ada", "ConsistentWith": "Invoice:999999", "Timeout": "5"}
    started = time.monotonic()
    response = await http.get("/queries/GetOrders", params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert time.monotonic() - started < 4


# ---------------------------------------------------------------------------------------------
# GET /notifications (SSE)


async def _collect(response: httpx.Response, into: list[dict[str, Any]], arrived: asyncio.Event) -> None:
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            into.append(json.loads(line.removeprefix("data:").strip()))
            arrived.set()


async def test_notifications_reach_only_their_own_account(http: httpx.AsyncClient) -> None:
    a, b = await onboard(http, "Listener A"), await onboard(http, "Listener B")
    seen_a: list[dict[str, Any]] = []
    seen_b: list[dict[str, Any]] = []
    arrived_a, arrived_b = asyncio.Event(), asyncio.Event()
    positions_a: set[int] = set()
    readers: list[asyncio.Task[None]] = []
    async with asyncio.timeout(60):
        async with (
            http.stream("GET", "/notifications", headers=a.headers) as stream_a,
            http.stream("GET", "/notifications", headers=b.headers) as stream_b,
        ):
            for stream in (stream_a, stream_b):
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
            readers.append(asyncio.create_task(_collect(stream_a, seen_a, arrived_a)))
            readers.append(asyncio.create_task(_collect(stream_b, seen_b, arrived_b)))
            try:
                # The stream subscribes right after it sends its headers, so an order placed at
                # that very moment could be missed: place orders until one is announced.
                async def place_orders() -> None:
                    for _ in range(10):
                        result = await placed(http, a, "Notified Customer")
                        positions_a.add(result["Positions"]["Order"])
                        try:
                            await asyncio.wait_for(arrived_a.wait(), 3)
                            return
                        except TimeoutError:
                            continue

                placer = asyncio.create_task(place_orders())
                await asyncio.wait_for(arrived_a.wait(), 40)
                await placer
                # Give a leaked notification time to reach B's stream too.
                await asyncio.sleep(1.5)
            finally:
                for reader in readers:
                    reader.cancel()
                await asyncio.gather(*readers, return_exceptions=True)

    assert seen_a, "A's stream announced nothing"
    for note in seen_a:
        assert set(note) == {"Projection", "StreamType", "Position"}, note
        assert note["Projection"] == "orders"
        assert note["StreamType"] == "Order"
        assert note["Position"] in positions_a, (note, positions_a)
    assert seen_b == [], f"B's stream received A's notifications: {seen_b}"


# ---------------------------------------------------------------------------------------------
# GET /projections, POST /projections/{Name}/rebuild


async def test_projections_are_listed_with_their_lag(
    http: httpx.AsyncClient, operator: Headers, tenant: Tenant
) -> None:
    await placed(http, tenant)
    response = await http.get("/projections", headers=operator)
    assert response.status_code == 200, response.text
    views = {v["Name"]: v for v in response.json()}
    assert "orders" in views
    orders = views["orders"]
    assert "Order" in orders["StreamTypes"]
    for field in ("Head", "Position", "EventsBehind"):
        assert isinstance(orders[field], int), orders
    assert orders["Head"] >= 1
    assert 0 <= orders["Position"] <= orders["Head"]
    assert orders["EventsBehind"] == orders["Head"] - orders["Position"]
    assert isinstance(orders["Pipeline"], str) and orders["Pipeline"]


async def test_projection_lag_of_one_account(http: httpx.AsyncClient, operator: Headers) -> None:
    tenant = await onboard(http, "Lag of one")
    first = await placed(http, tenant)
    await placed(http, tenant)
    await cancel(http, tenant, order_id_of(first))
    response = await http.get("/projections", params={"AccountId": str(tenant.account_id)}, headers=operator)
    assert response.status_code == 200, response.text
    orders = next(v for v in response.json() if v["Name"] == "orders")
    # Two orders placed, one cancelled: three Order events of this account alone.
    assert orders["Head"] == 3
    assert orders["EventsBehind"] == orders["Head"] - orders["Position"]

    unknown = await http.get("/projections", params={"AccountId": str(uuid.uuid4())}, headers=operator)
    assert "there is no account" in assert_problem(unknown, 404)["detail"]
    bad = await http.get("/projections", params={"AccountId": "nope"}, headers=operator)
    assert "AccountId" in assert_problem(bad, 422)["detail"]


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/projections"), ("POST", "/projections/orders/rebuild")]
)
async def test_projection_endpoints_need_the_operator_token(
    http: httpx.AsyncClient, tenant: Tenant, method: str, path: str
) -> None:
    for headers in ({}, tenant.headers, {"Authorization": "Bearer wrong"}):
        response = await http.request(
            method, path, headers=headers, json={"AccountId": str(tenant.account_id)}
        )
        assert_problem(response, 401)


async def test_rebuild_errors(http: httpx.AsyncClient, operator: Headers, tenant: Tenant) -> None:
    assert_problem(
        await http.post(
            "/projections/invoices/rebuild", json={"AccountId": str(tenant.account_id)}, headers=operator
        ),
        404,
    )
    assert_problem(
        await http.post(
            "/projections/orders/rebuild", json={"AccountId": str(uuid.uuid4())}, headers=operator
        ),
        404,
    )
    assert_problem(
        await http.post("/projections/orders/rebuild", json={"AccountId": "not-a-uuid"}, headers=operator),
        422,
    )
    assert_problem(
        await http.post(
            "/projections/orders/rebuild", json={"Account": str(tenant.account_id)}, headers=operator
        ),
        422,
    )
    assert_problem(
        await http.post(
            "/projections/orders/rebuild",
            content=b"{",
            headers={**operator, "Content-Type": "application/json"},
        ),
        400,
    )


async def _read_model_rows(pool: asyncpg.Pool[Any], account_id: UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT order_id, customer_name, status, total, order_lines::text AS order_lines, cancel_reason, "
        "created_at, updated_at FROM rm_order WHERE account_id = $1 ORDER BY order_id",
        account_id,
    )
    return [dict(r) for r in rows]


async def test_rebuilding_one_accounts_orders_restores_the_same_read_model(
    http: httpx.AsyncClient, operator: Headers, pool: asyncpg.Pool[Any]
) -> None:
    tenant = await onboard(http, "Rebuilt")
    other = await onboard(http, "Not Rebuilt")
    customer = "Rebuilt Rosa"
    kept = await placed(http, tenant, customer)
    gone = await placed(http, tenant, customer)
    cancelled = await cancel(http, tenant, order_id_of(gone))
    assert cancelled.status_code == 200, cancelled.text
    token = cancelled.json()["ConsistencyToken"]
    other_token = (await placed(http, other, customer))["ConsistencyToken"]

    before = await get_orders(http, tenant, customer, token)
    assert sorted((i["OrderId"], i["Status"]) for i in before) == sorted(
        [(order_id_of(kept), "Placed"), (order_id_of(gone), "Cancelled")]
    )
    other_before = await get_orders(http, other, customer, other_token)
    rows_before = await _read_model_rows(pool, tenant.account_id)
    other_rows_before = await _read_model_rows(pool, other.account_id)

    # Lose the account's read model behind the projector's back: only a rebuild brings it back.
    await pool.execute("DELETE FROM rm_order WHERE account_id = $1", tenant.account_id)
    assert await get_orders(http, tenant, customer, token) == []

    response = await http.post(
        "/projections/orders/rebuild", json={"AccountId": str(tenant.account_id)}, headers=operator
    )
    assert response.status_code == 202, response.text
    workflow_id = response.json()["WorkflowId"]
    assert isinstance(workflow_id, str) and workflow_id

    async def restored() -> bool:
        return await get_orders(http, tenant, customer) == before

    await eventually(restored, 30, "the rebuilt read model equals the one before")
    assert await get_orders(http, tenant, customer, token) == before
    assert await _read_model_rows(pool, tenant.account_id) == rows_before
    assert await get_orders(http, other, customer, other_token) == other_before
    assert await _read_model_rows(pool, other.account_id) == other_rows_before

    # The rebuilt read model keeps following new events.
    later = await placed(http, tenant, customer)
    after = await get_orders(http, tenant, customer, later["ConsistencyToken"])
    assert [i["OrderId"] for i in after] == [i["OrderId"] for i in before] + [order_id_of(later)]


# ---------------------------------------------------------------------------------------------
# GET /health, GET /schema/openapi.json


async def test_health(http: httpx.AsyncClient) -> None:
    response = await http.get("/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["Status"] == "ok"
    assert body["Checks"] == {"Postgres": "up", "Redis": "up", "Temporal": "up"}


async def test_openapi_document(http: httpx.AsyncClient) -> None:
    response = await http.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    assert "json" in response.headers["content-type"]
    document = response.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for path in ("/accounts", "/commands/PlaceOrder", "/commands/CancelOrder", "/notifications", "/health"):
        assert path in paths, sorted(paths)
    body = paths["/commands/PlaceOrder"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/PlaceOrder")
    assert {"OrderId", "CustomerName", "OrderLines"} <= set(
        document["components"]["schemas"]["PlaceOrder"]["properties"]
    )
    # Every command has its operation (one route serves them all), and every reference resolves.
    assert {f"/commands/{name}" for name in COMMANDS} <= set(paths)
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document)))
    assert refs <= set(document["components"]["schemas"]), refs - set(document["components"]["schemas"])
    errors = paths["/commands/CancelOrder"]["post"]["responses"]
    assert {"200", "400", "401", "404", "409", "413", "422", "429", "503"} <= set(errors)
    conflict = errors["409"]  # one response every command shares
    assert conflict == {"$ref": "#/components/responses/Conflict"}
    assert "application/problem+json" in document["components"]["responses"]["Conflict"]["content"]
    assert "429" in paths["/customisations"]["post"]["responses"]


MONEY_PROPERTIES = {"UnitPrice", "SpendingLimit", "OpenAmount", "AvailableCredit", "Total", "Amount"}


def _properties(node: Any, path: str = "") -> list[tuple[str, str, Any]]:
    """(where, name, schema) of every property of every schema in `node`."""
    found: list[tuple[str, str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                found += [(path, name, schema) for name, schema in value.items()]
            found += _properties(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += _properties(item, f"{path}/{i}")
    return found


async def test_the_openapi_document_declares_money_and_dates_as_accepted(http: httpx.AsyncClient) -> None:
    """Money, in commands and in query results, is a string with the exact pattern (range included),
    never `format: decimal` or a number; Custom says what money and dates look like."""
    document = (await http.get("/schema/openapi.json")).json()
    assert '"decimal"' not in json.dumps(document)
    money = [
        (where, name, schema) for where, name, schema in _properties(document) if name in MONEY_PROPERTIES
    ]
    assert {name for _, name, _ in money} == MONEY_PROPERTIES
    assert {where.split("/")[-1] for where, _, _ in money} >= {
        "PlaceOrderOrderLine",
        "MakeCustomer",
        "ChangeSpendingLimit",
        "OrderView",
        "OrderLineView",
        "CustomerView",
        "InvoiceView",
    }
    for where, name, schema in money:
        declared = [s for s in schema.get("anyOf", schema.get("oneOf", [schema])) if s.get("type") != "null"]
        assert len(declared) == 1, (where, name, schema)
        assert declared[0]["type"] == "string" and "format" not in declared[0], (where, name, schema)
        assert declared[0]["pattern"] == MONEY_PATTERN, (where, name, schema)
    customer = document["components"]["schemas"]["CustomerView"]["properties"]
    assert customer["OverLimit"]["type"] == "boolean"
    custom = document["components"]["schemas"]["MakeCustomer"]["properties"]["Custom"]
    assert custom["anyOf"][0] == {"$ref": "#/components/schemas/Custom"}  # one schema, every command's
    custom = document["components"]["schemas"]["Custom"]
    assert "YYYY-MM-DD" in json.dumps(custom) and "10.00" in json.dumps(custom)


async def test_unknown_paths_are_problems_too(http: httpx.AsyncClient, tenant: Tenant) -> None:
    assert_problem(await http.get("/no/such/path", headers=tenant.headers), 404)
    assert_problem(await http.get("/commands/PlaceOrder", headers=tenant.headers), 405)
