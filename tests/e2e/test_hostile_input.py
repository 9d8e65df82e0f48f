"""Hostile input that used to answer 500: every case gets its 4xx problem+json and stores nothing.

The fuzz suite beside this (`test_fuzz_api.py`) generates bodies from the documented schemas; these
are the inputs no schema generator makes, found by hand and now kept:

* JSON nested about a thousand deep, as the whole body or in a field, on every JSON body (commands,
  customisations, accounts, moves, rebuilds): msgspec recursed into a RecursionError. Now 400,
  naming the limit (`core.bodies.MAX_JSON_DEPTH`), checked before decoding.
* Invalid UTF-8 inside a JSON string (a value or a key): UnicodeDecodeError. Now 400.
* Bodies Litestar decoded loosely (`"MaxLength": "10"` became 10). Now every JSON body is read by
  the one strict decoder: 422 naming the field.
* Tampered `After` cursors: a deeply nested list (RecursionError), a name holding NUL (refused by
  Postgres), a time out of range, wrong types, a huge one. Now 422 before any SQL runs.
* Malformed HTTP the server lets the application answer: problem+json like every other error.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest

from core.bodies import MAX_JSON_DEPTH
from tests.conftest import OPERATOR_TOKEN, Tenant
from tests.e2e.test_http_contract import assert_problem, order_body

DEEP = 1000
"""About where msgspec's recursion gave up."""
HOLE = "__hostile__"
"""A string in a body's JSON that a test replaces with raw bytes."""


# ---------------------------------------------------------------------------------------------
# the JSON bodies


@dataclass(frozen=True)
class Endpoint:
    """A JSON body the API reads: where, as whom, a body of the right shape, and a field in it."""

    label: str
    path: Callable[[Tenant], str]
    operator: bool
    body: Callable[[Tenant], dict[str, Any]]
    field: str

    def headers(self, tenant: Tenant) -> dict[str, str]:
        auth = {"Authorization": f"Bearer {OPERATOR_TOKEN}"} if self.operator else tenant.headers
        return {**auth, "Content-Type": "application/json"}


ENDPOINTS = [
    Endpoint("command", lambda t: "/commands/PlaceOrder", False, lambda t: order_body(), "CustomerName"),
    Endpoint(
        "customisation",
        lambda t: "/customisations",
        False,
        lambda t: {"Element": "Order", "Attribute": "Colour", "Type": "string"},
        "Attribute",
    ),
    Endpoint("account", lambda t: "/accounts", True, lambda t: {"Name": "Hostile Ltd"}, "Name"),
    Endpoint("move", lambda t: f"/accounts/{t.account_id}/move", True, lambda t: {"To": "main"}, "To"),
    Endpoint(
        "rebuild",
        lambda t: "/projections/orders/rebuild",
        True,
        lambda t: {"AccountId": str(t.account_id)},
        "AccountId",
    ),
]


def nested_arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def nested_objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def with_raw(body: dict[str, Any], field: str, raw: bytes) -> bytes:
    """`body` as JSON with `field`'s value replaced by the bytes `raw`, as they are."""
    encoded = json.dumps({**body, field: HOLE}).encode()
    return encoded.replace(json.dumps(HOLE).encode(), raw)


def with_raw_field(body: dict[str, Any], raw_name: bytes, raw_value: bytes) -> bytes:
    """`body` as JSON with one more member, its name and value the bytes given, as they are."""
    encoded = json.dumps(body).encode()
    return encoded[:-1] + b", " + raw_name + b": " + raw_value + b"}"


HOSTILE_BODIES: list[tuple[str, Callable[[Endpoint, Tenant], bytes], str]] = [
    ("deep arrays as the body", lambda e, t: nested_arrays(DEEP), "nested"),
    ("deep objects as the body", lambda e, t: nested_objects(DEEP), "nested"),
    ("deep arrays in a field", lambda e, t: with_raw(e.body(t), e.field, nested_arrays(DEEP)), "nested"),
    ("deep objects in a field", lambda e, t: with_raw(e.body(t), e.field, nested_objects(DEEP)), "nested"),
    (
        "deep arrays in an unknown field",
        lambda e, t: with_raw_field(e.body(t), b'"Deep"', nested_arrays(DEEP)),
        "nested",
    ),
    (
        "one level past the limit in a field",
        lambda e, t: with_raw(e.body(t), e.field, nested_arrays(MAX_JSON_DEPTH)),
        "nested",
    ),
    ("unclosed arrays", lambda e, t: b"[" * DEEP, "nested"),
    ("bad UTF-8 in a value", lambda e, t: with_raw(e.body(t), e.field, b'"\xff\xfe"'), "UTF-8"),
    ("UTF-8 cut short in a value", lambda e, t: with_raw(e.body(t), e.field, b'"caf\xc3"'), "UTF-8"),
    ("bad UTF-8 in a name", lambda e, t: with_raw_field(e.body(t), b'"\xc3("', b"1"), "UTF-8"),
]


async def stored(pool: asyncpg.Pool[Any], tenant: Tenant) -> tuple[int, ...]:
    """What a refused request must not change: the account's events, command log and definitions,
    and every account and fence (a move)."""
    row = await pool.fetchrow(
        """
        SELECT (SELECT count(*) FROM events WHERE account_id = $1),
               (SELECT count(*) FROM command_log WHERE account_id = $1),
               (SELECT count(*) FROM customisations WHERE account_id = $1),
               (SELECT count(*) FROM accounts),
               (SELECT count(*) FROM account_fences)
        """,
        tenant.account_id,
    )
    assert row is not None
    return tuple(row)


@pytest.mark.parametrize(("case", "make", "says"), [pytest.param(*c, id=c[0]) for c in HOSTILE_BODIES])
@pytest.mark.parametrize("endpoint", [pytest.param(e, id=e.label) for e in ENDPOINTS])
async def test_hostile_json_bodies_are_400_and_store_nothing(
    http: httpx.AsyncClient,
    tenant: Tenant,
    pool: asyncpg.Pool[Any],
    endpoint: Endpoint,
    case: str,
    make: Callable[[Endpoint, Tenant], bytes],
    says: str,
) -> None:
    before = await stored(pool, tenant)
    response = await http.post(
        endpoint.path(tenant), content=make(endpoint, tenant), headers=endpoint.headers(tenant)
    )
    detail = assert_problem(response, 400)["detail"]
    assert says in detail, detail
    if says == "nested":
        assert str(MAX_JSON_DEPTH) in detail, detail
    assert await stored(pool, tenant) == before


@pytest.mark.parametrize("endpoint", [pytest.param(e, id=e.label) for e in ENDPOINTS])
async def test_nesting_up_to_the_limit_is_json_of_the_wrong_shape(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool[Any], endpoint: Endpoint
) -> None:
    """At the limit the body is JSON: what is wrong is the field's type, a 422 naming it."""
    before = await stored(pool, tenant)
    body = with_raw(endpoint.body(tenant), endpoint.field, nested_arrays(MAX_JSON_DEPTH - 1))
    response = await http.post(endpoint.path(tenant), content=body, headers=endpoint.headers(tenant))
    assert endpoint.field in assert_problem(response, 422)["detail"]
    assert await stored(pool, tenant) == before


@pytest.mark.parametrize(
    ("endpoint", "content", "says"),
    [
        pytest.param(ENDPOINTS[0], b"", "empty", id="command, empty"),
        pytest.param(ENDPOINTS[1], b"", "empty", id="customisation, empty"),
        pytest.param(ENDPOINTS[2], b"  ", "empty", id="account, blank"),
        pytest.param(ENDPOINTS[3], b"{", "not valid JSON", id="move, truncated"),
        pytest.param(ENDPOINTS[4], b"{'AccountId': 1}", "not valid JSON", id="rebuild, single quotes"),
        pytest.param(ENDPOINTS[1], b'{"Element": "Order",}', "not valid JSON", id="customisation, comma"),
    ],
)
async def test_what_is_not_json_is_400_alike_on_every_body(
    http: httpx.AsyncClient,
    tenant: Tenant,
    pool: asyncpg.Pool[Any],
    endpoint: Endpoint,
    content: bytes,
    says: str,
) -> None:
    before = await stored(pool, tenant)
    response = await http.post(endpoint.path(tenant), content=content, headers=endpoint.headers(tenant))
    assert says in assert_problem(response, 400)["detail"]
    assert await stored(pool, tenant) == before


@pytest.mark.parametrize(
    ("endpoint", "changes", "field"),
    [
        pytest.param(ENDPOINTS[1], {"MaxLength": "10"}, "MaxLength", id="customisation, MaxLength as text"),
        pytest.param(ENDPOINTS[1], {"MaxLength": 10.0}, "MaxLength", id="customisation, MaxLength as 10.0"),
        pytest.param(ENDPOINTS[1], {"Required": "true"}, "Required", id="customisation, Required as text"),
        pytest.param(ENDPOINTS[1], {"Required": 1}, "Required", id="customisation, Required as 1"),
        pytest.param(ENDPOINTS[1], {"Colour": "red"}, "Colour", id="customisation, unknown field"),
        pytest.param(ENDPOINTS[2], {"Name": 42}, "Name", id="account, Name as a number"),
        pytest.param(ENDPOINTS[2], {"Name": ["Acme"]}, "Name", id="account, Name as a list"),
        pytest.param(ENDPOINTS[3], {"To": 1}, "To", id="move, To as a number"),
        pytest.param(ENDPOINTS[3], {"To": None}, "To", id="move, To null"),
        pytest.param(ENDPOINTS[4], {"AccountId": 7}, "AccountId", id="rebuild, AccountId as a number"),
    ],
)
async def test_every_json_body_is_read_strictly(
    http: httpx.AsyncClient,
    tenant: Tenant,
    pool: asyncpg.Pool[Any],
    endpoint: Endpoint,
    changes: dict[str, Any],
    field: str,
) -> None:
    """No body is coerced: a number in text, 1 for true, 10.0 for 10 are 422, naming the field."""
    before = await stored(pool, tenant)
    response = await http.post(
        endpoint.path(tenant),
        content=json.dumps({**endpoint.body(tenant), **changes}).encode(),
        headers=endpoint.headers(tenant),
    )
    assert field in assert_problem(response, 422)["detail"]
    assert await stored(pool, tenant) == before
    if endpoint.label == "customisation":
        listed = await http.get("/customisations", headers=tenant.headers)
        assert listed.json() == []


async def test_the_strict_bodies_are_documented_as_before(http: httpx.AsyncClient) -> None:
    """Read by the strict decoder, each body is still its own schema in the OpenAPI document."""
    document = (await http.get("/schema/openapi.json")).json()
    schemas = document["components"]["schemas"]
    for path, schema in [
        ("/customisations", "DefineAttribute"),
        ("/accounts", "CreateAccount"),
        ("/accounts/{account_id}/move", "MoveAccount"),
    ]:
        body = document["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        assert body["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{schema}"}
        assert schemas[schema]["type"] == "object"
    assert schemas["DefineAttribute"]["properties"]["MaxLength"]["oneOf"][0]["type"] == "integer"


# ---------------------------------------------------------------------------------------------
# cursors


def cursor_of(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor(*key: Any) -> str:
    return cursor_of(json.dumps(list(key)).encode())


ID = str(UUID(int=7))
WORKAREA = str(UUID(int=8))
QUERY_PARAMS = {
    "GetCustomers": {},
    "GetOrders": {"CustomerName": "Ada Lovelace"},
    "GetOpenInvoices": {},
    "GetDeliveries": {"WorkareaId": WORKAREA},
}
TAMPERED: list[Any] = [
    pytest.param("GetCustomers", cursor_of(nested_arrays(DEEP)), id="deep arrays"),
    pytest.param("GetOrders", cursor_of(nested_arrays(DEEP)), id="deep arrays, GetOrders"),
    pytest.param(
        "GetCustomers",
        cursor_of(b"[" + nested_arrays(DEEP) + b', "' + ID.encode() + b'"]'),
        id="deep arrays as the name",
    ),
    pytest.param("GetCustomers", cursor_of(nested_objects(DEEP)), id="deep objects"),
    pytest.param("GetCustomers", cursor("Ada\x00Lovelace", ID), id="NUL in the name"),
    pytest.param("GetCustomers", cursor("\x00", ID), id="only NUL"),
    pytest.param("GetCustomers", cursor("x" * 3000, ID), id="huge name"),
    pytest.param("GetCustomers", "A" * 10_000, id="huge cursor"),
    pytest.param("GetCustomers", cursor(1, ID), id="name as a number"),
    pytest.param("GetCustomers", cursor("Ada", 7), id="id as a number"),
    pytest.param("GetCustomers", cursor("Ada", "not-a-uuid"), id="id not a UUID"),
    pytest.param("GetCustomers", cursor("Ada", ID, "more"), id="three parts"),
    pytest.param("GetCustomers", cursor("Ada"), id="one part"),
    pytest.param("GetCustomers", cursor_of(b'{"Name": "Ada"}'), id="an object"),
    pytest.param("GetCustomers", cursor_of(b"null"), id="null"),
    pytest.param("GetCustomers", cursor_of(b'["\xff", "' + ID.encode() + b'"]'), id="bad UTF-8"),
    pytest.param("GetCustomers", cursor_of(b'["\\ud800", "' + ID.encode() + b'"]'), id="lone surrogate"),
    pytest.param("GetCustomers", "!!!!", id="not base64"),
    pytest.param("GetCustomers", "é", id="not ASCII"),
    pytest.param("GetOrders", cursor("0001-01-01T00:00:00+01:00", ID), id="time before year 1 in UTC"),
    pytest.param("GetOrders", cursor("9999-12-31T23:59:59-01:00", ID), id="time after year 9999 in UTC"),
    pytest.param("GetOrders", cursor("2026-12-04T10:00:00", ID), id="time without an offset"),
    pytest.param("GetOrders", cursor("Ada", ID), id="a name for a time"),
    pytest.param("GetOpenInvoices", cursor("2026-12-04T10:00:00+00:00\x00", ID), id="NUL after a time"),
    pytest.param("GetDeliveries", cursor(None, ID), id="null time"),
]


@pytest.mark.parametrize(("query", "after"), TAMPERED)
async def test_tampered_cursors_are_422(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool[Any], query: str, after: str
) -> None:
    before = await stored(pool, tenant)
    response = await http.get(
        f"/queries/{query}", params={**QUERY_PARAMS[query], "After": after}, headers=tenant.headers
    )
    detail = assert_problem(response, 422)["detail"]
    assert "After is not a cursor of this query" in detail, detail
    assert await stored(pool, tenant) == before


async def test_a_cursor_from_the_query_still_pages(http: httpx.AsyncClient, tenant: Tenant) -> None:
    """The checks refuse tampered cursors only: a page's own `Next` (a name and an id) goes on."""
    workarea, person = str(uuid.uuid4()), str(uuid.uuid4())
    steps = [
        ("CreateWorkarea", {"WorkareaId": workarea, "Name": "Floor"}),
        ("RegisterPerson", {"PersonId": person, "Name": "Zoë \u202e\t Ünïcode " + "ü" * 150}),
    ]
    for name in ("Ada", "Bea", "Cy"):
        party = str(uuid.uuid4())
        steps.append(("RegisterPerson", {"PersonId": party, "Name": name}))
        steps.append(
            (
                "MakeCustomer",
                {
                    "CustomerId": str(uuid.uuid4()),
                    "PartyId": party,
                    "WorkareaId": workarea,
                    "SpendingLimit": "10.00",
                },
            )
        )
    steps.append(
        (
            "MakeCustomer",
            {
                "CustomerId": str(uuid.uuid4()),
                "PartyId": person,
                "WorkareaId": workarea,
                "SpendingLimit": "1.00",
            },
        )
    )
    token = ""
    for command, body in steps:
        response = await http.post(f"/commands/{command}", json=body, headers=tenant.headers)
        assert response.status_code == 200, response.text
        token = response.json()["ConsistencyToken"]
    names: list[str] = []
    params: dict[str, Any] = {"Limit": 1, "ConsistentWith": token}
    for _ in range(10):
        page = await http.get("/queries/GetCustomers", params=params, headers=tenant.headers)
        assert page.status_code == 200, page.text
        body = page.json()
        names += [item["Name"] for item in body["Items"]]
        if "Next" not in body:
            break
        params = {"Limit": 1, "After": body["Next"]}
    assert names == ["Ada", "Bea", "Cy", "Zoë \u202e\t Ünïcode " + "ü" * 150]


# ---------------------------------------------------------------------------------------------
# malformed HTTP


async def raw_request(api: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `request` as it is over a new connection; the status, headers and body answered."""
    host, port = api.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(reader.readexactly(length), 10) if length else b""
        return status, headers, body
    finally:
        writer.close()


def assert_raw_problem(answer: tuple[int, dict[str, str], bytes], status: int) -> dict[str, Any]:
    got, headers, body = answer
    assert got == status, (got, headers, body[:300])
    assert headers.get("content-type", "").startswith("application/problem+json"), (headers, body[:300])
    problem: dict[str, Any] = json.loads(body)
    assert problem["status"] == status and problem["detail"].strip(), problem
    return problem


def _post(path: str, headers: dict[str, str], body: bytes = b"", chunked: bool = False) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if chunked:
        head += "Transfer-Encoding: chunked\r\n\r\n"
        chunks = b"".join(
            f"{len(body[i : i + 65536]):x}\r\n".encode() + body[i : i + 65536] + b"\r\n"
            for i in range(0, len(body), 65536)
        )
        return head.encode() + chunks + b"0\r\n\r\n"
    return head.encode() + b"\r\n" + body


async def test_a_body_announced_over_the_limit_is_413(api: str, tenant: Tenant) -> None:
    headers = {**tenant.headers, "Content-Type": "application/json", "Content-Length": str(2 * 1024 * 1024)}
    answer = await raw_request(api, _post("/commands/PlaceOrder", headers, b"{}"))
    assert_raw_problem(answer, 413)


async def test_a_chunked_body_over_the_limit_is_413(
    api: str, tenant: Tenant, pool: asyncpg.Pool[Any]
) -> None:
    body = json.dumps(order_body("x" * (1024 * 1024 + 1))).encode()
    headers = {**tenant.headers, "Content-Type": "application/json"}
    answer = await raw_request(api, _post("/commands/PlaceOrder", headers, body, chunked=True))
    assert_raw_problem(answer, 413)
    assert (await stored(pool, tenant))[0] == 0


@pytest.mark.parametrize(
    ("method", "target", "status"),
    [
        pytest.param("GET", "/queries/GetOrders?CustomerName=%FF%FE", 200, id="bad UTF-8 in the query"),
        pytest.param("GET", "/queries/GetOrders?CustomerName=%ZZ", 200, id="bad escape in the query"),
        pytest.param("GET", "/queries/GetOrders?CustomerName=%00", 422, id="NUL in the query"),
        pytest.param("GET", "/queries/%FF", 404, id="bad UTF-8 in a query's name"),
        pytest.param("POST", "/commands/%FF", 404, id="bad UTF-8 in a command's name"),
        pytest.param("POST", "/commands/Place%00Order", 404, id="NUL in a command's name"),
    ],
)
async def test_odd_urls_are_read_leniently_or_refused_as_problems(
    api: str, tenant: Tenant, method: str, target: str, status: int
) -> None:
    """Percent-escapes that are not UTF-8 read as U+FFFD (a name like any other); the rest is a 4xx."""
    request = f"{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
    request += f"Authorization: {tenant.headers['Authorization']}\r\nContent-Length: 2\r\n\r\n{{}}"
    answer = await raw_request(api, request.encode())
    if status == 200:
        assert answer[0] == 200, answer
    else:
        assert_raw_problem(answer, status)


UNPARSABLE = [
    pytest.param(b"Content-Length: abc\r\n\r\n{}", id="Content-Length not a number"),
    pytest.param(b"Content-Length: -2\r\n\r\n{}", id="Content-Length negative"),
    pytest.param(b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", id="Content-Length twice"),
    pytest.param(b"Content-Length: 99999999999999999999999999\r\n\r\n{}", id="Content-Length beyond 64 bits"),
    pytest.param(
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        id="Content-Length and chunked",
    ),
    pytest.param(b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", id="a chunk size not hex"),
    pytest.param(b"A header without a colon\r\nContent-Length: 2\r\n\r\n{}", id="a header without a colon"),
]


@pytest.mark.parametrize("rest", UNPARSABLE)
async def test_requests_the_server_cannot_parse_are_problems(
    api: str, tenant: Tenant, pool: asyncpg.Pool[Any], rest: bytes
) -> None:
    """uvicorn answers these itself, before the application sees them (it used to in text/plain)."""
    before = await stored(pool, tenant)
    auth = tenant.headers["Authorization"]
    head = f"POST /commands/PlaceOrder HTTP/1.1\r\nHost: test\r\nAuthorization: {auth}\r\n"
    assert_raw_problem(await raw_request(api, head.encode() + rest), 400)
    assert await stored(pool, tenant) == before


@pytest.mark.parametrize(
    "request_line",
    [
        pytest.param(b"P@ST /commands/PlaceOrder HTTP/1.1", id="a method with an @"),
        pytest.param(b"GET /queries/GetOrders?CustomerName=\xff HTTP/1.1", id="a raw byte in the URL"),
        pytest.param(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", id="TLS to the plain port"),
    ],
)
async def test_request_lines_the_server_cannot_parse_are_problems(api: str, request_line: bytes) -> None:
    assert_raw_problem(await raw_request(api, request_line + b"\r\nHost: test\r\n\r\n"), 400)


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        pytest.param("application/x-www-form-urlencoded", b"Name=Acme", id="a form"),
        pytest.param("text/plain", b'{"Name": "Acme"}', id="text"),
        pytest.param("multipart/form-data; boundary=x", b"--x--\r\n", id="multipart"),
        pytest.param("application/json; charset=latin-1", b'{"Name": "Caf\xe9"}', id="latin-1"),
    ],
)
async def test_bodies_in_other_media_types_are_read_as_json(
    http: httpx.AsyncClient,
    operator: dict[str, str],
    pool: asyncpg.Pool[Any],
    content_type: str,
    content: bytes,
) -> None:
    """The body is JSON whatever Content-Type says: what is not JSON is 400, what is JSON is read."""
    before = int(await pool.fetchval("SELECT count(*) FROM accounts"))
    response = await http.post(
        "/accounts", content=content, headers={**operator, "Content-Type": content_type}
    )
    if content.startswith(b"{") and b"\xe9" not in content:
        assert response.status_code == 201, response.text
        return
    assert_problem(response, 400)
    assert int(await pool.fetchval("SELECT count(*) FROM accounts")) == before
