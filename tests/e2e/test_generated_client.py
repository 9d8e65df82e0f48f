"""A client generated from the served OpenAPI document works: openapi-python-client makes it without a
warning, and the ERP's flow runs through it (onboarding, an order with Decimal money, reading it back
consistently, an unknown customer's 404 and a 422's JSON Pointer, both parsed as ProblemDetails).

The generator runs as a program (the one beside this Python), as a user would run it; the package it
writes is imported from a temporary directory. The API runs on this test's event loop, so the client's
async functions are used (its sync ones would block the loop the API answers on).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.conftest import OPERATOR_TOKEN

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "erp_generated_client"


def generate(document: bytes, where: Path, package: str = PACKAGE) -> tuple[str, float]:
    """Runs the generator on `document` into `where/package`: its output and the seconds it took."""
    source = where / f"{package}.json"
    source.write_bytes(document)
    config = where / "config.yaml"
    config.write_text("post_hooks: []\n")  # no formatter run: the test is about the document
    started = time.monotonic()
    done = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(source),
            "--meta",
            "none",
            "--output-path",
            str(where / package),
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    took = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output, took


@pytest.fixture
def client_package(tmp_path: Path) -> Iterator[Path]:
    """A directory on sys.path for the generated package; its modules are forgotten afterwards."""
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


async def test_a_generated_client_runs_the_erp(
    api: str, http: httpx.AsyncClient, client_package: Path
) -> None:
    served = await http.get("/schema/openapi.json")
    assert served.status_code == 200
    output, took = generate(served.content, client_package)
    assert "warning" not in output.lower(), output
    print(f"generated the ERP's client in {took:.1f} s")

    client_module = module("client")
    models = module("models")
    operator = client_module.AuthenticatedClient(base_url=api, token=OPERATOR_TOKEN)
    no_one = client_module.Client(base_url=api)

    # Onboarding, with the operator token (OperatorToken).
    created = await module("api.accounts.create_account").asyncio_detailed(
        client=operator, body=models.CreateAccount(name="Generated client")
    )
    assert created.status_code == 201, created.content
    account = created.parsed
    assert account.status == "Active"
    tenant = client_module.AuthenticatedClient(base_url=api, token=account.api_key)

    # No key: 401, parsed as a problem.
    refused = await module("api.queries.get_orders").asyncio_detailed(client=no_one, customer_name="x")
    assert refused.status_code == 401
    assert isinstance(refused.parsed, models.ProblemDetails) and refused.parsed.status == 401

    # An order, its money computed as Decimal and sent as the document says: a string.
    price = Decimal("12.5")
    order_id = uuid.uuid4()
    name = f"Client {order_id.hex[:8]}"
    place_order = module("api.order.place_order")
    placed = await place_order.asyncio_detailed(
        client=tenant,
        body=models.PlaceOrder(
            order_id=order_id,
            customer_name=name,
            order_lines=[models.PlaceOrderOrderLine(product_code="P-1", quantity=2, unit_price=str(price))],
        ),
        idempotency_key=str(order_id),
    )
    assert placed.status_code == 200, placed.content
    token = placed.parsed.consistency_token

    # Read back once the read model has it (ConsistentWith).
    orders = await module("api.queries.get_orders").asyncio_detailed(
        client=tenant, customer_name=name, consistent_with=token, timeout=20.0
    )
    assert orders.status_code == 200, orders.content
    [order] = orders.parsed.items
    assert order.order_id == order_id
    assert order.status == models.OrderViewStatus.PLACED
    assert Decimal(order.total) == 2 * price and order.total == "25.00"
    assert Decimal(order.order_lines[0].unit_price) == price

    # An unknown customer: 404, a problem.
    unknown = uuid.uuid4()
    missing = await module("api.queries.get_customer").asyncio_detailed(client=tenant, customer_id=unknown)
    assert missing.status_code == 404, missing.content
    assert isinstance(missing.parsed, models.ProblemDetails)
    assert missing.parsed.status == 404 and str(unknown) in missing.parsed.detail

    # A 422 says where: a JSON Pointer to the field.
    bad = await place_order.asyncio_detailed(
        client=tenant,
        body=models.PlaceOrder(
            order_id=uuid.uuid4(),
            customer_name=name,
            order_lines=[models.PlaceOrderOrderLine(product_code="P-1", quantity=1, unit_price="1e3")],
        ),
    )
    assert bad.status_code == 422, bad.content
    problem = bad.parsed
    assert isinstance(problem, models.ProblemDetails)
    [error] = problem.errors
    assert error.pointer == "/OrderLines/0/UnitPrice"
    assert "1e3" in error.detail


async def test_a_part_of_the_document_makes_a_client_of_its_own(
    http: httpx.AsyncClient, client_package: Path
) -> None:
    """`/schema/openapi/Order,queries.json`: the Order element's commands and the queries, and only
    the schemas they use; a client of them is generated without a warning."""
    part = await http.get("/schema/openapi/Order,queries.json")
    assert part.status_code == 200, part.text
    document = part.json()
    ids = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    assert {"placeOrder", "cancelOrder", "getOrders", "getCustomer"} <= ids
    assert not ids & {"createAccount", "makeCustomer", "health"}
    assert "PlaceOrder" in document["components"]["schemas"]
    assert "MakeCustomer" not in document["components"]["schemas"]
    output, _ = generate(part.content, client_package)
    assert "warning" not in output.lower(), output

    unknown = await http.get("/schema/openapi/Nothing.json")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert "Order" in unknown.json()["detail"]


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


async def test_the_document_is_one_a_generator_likes(http: httpx.AsyncClient) -> None:
    """Readable, unique operation ids; each operation's security; errors as the one ProblemDetails;
    the notifications as an event stream; every body documented; enums for fixed sets."""
    document = (await http.get("/schema/openapi.json")).json()
    operations = dict(_operations(document))
    ids = [op["operationId"] for op in operations.values()]
    assert len(ids) == len(set(ids))
    assert {"placeOrder", "getOrders", "health", "listProjections", "createAccount"} <= set(ids)
    assert all(i[:1].islower() and i.isalnum() for i in ids), ids

    schemes = document["components"]["securitySchemes"]
    assert {name: s["scheme"] for name, s in schemes.items()} == {
        "TenantApiKey": "bearer",
        "OperatorToken": "bearer",
    }
    for label, operation in operations.items():
        expected = (
            None
            if label.startswith("GET /health")
            else [{"OperatorToken": []}]
            if label.split()[1].startswith(("/accounts", "/projections", "/operations"))
            else [{"TenantApiKey": []}]
        )
        assert operation.get("security") == expected, label
        for code, response in operation["responses"].items():
            if "$ref" in response:  # a command's: shared by every command
                response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
            if int(code) >= 400 and label != "GET /health":
                assert response["content"] == {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
                }, (label, code)
        if label.startswith("POST"):
            assert "requestBody" in operation or label.endswith(("/abort", "/offboard", "/tickets")), label

    problem = document["components"]["schemas"]["ProblemDetails"]
    assert problem["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/FieldError"}
    assert problem["example"]["errors"][0]["pointer"] == "/OrderLines/0/UnitPrice"

    stream = operations["GET /notifications"]["responses"]["200"]["content"]
    assert list(stream) == ["text/event-stream"]
    rebuild = operations["POST /projections/{name}/rebuild"]["requestBody"]
    assert rebuild["required"] is False
    assert rebuild["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/RebuildRequest"}

    schemas = document["components"]["schemas"]
    custom = schemas["PlaceOrder"]["properties"]["Custom"]
    assert custom["anyOf"][0] == {"$ref": "#/components/schemas/Custom"}
    assert schemas["OrderView"]["properties"]["Status"]["enum"] == [
        "Placed",
        "Cancelled",
        "Delivered",
        "Invoiced",
        "Paid",
    ]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/no/such/route", 404),
        ("DELETE", "/health", 405),
        ("GET", "/projections?AccountId=not-a-uuid", 422),
        ("GET", "/schema/swagger", 404),  # off unless ERP_API_DOCS
        ("GET", "/schema/redoc", 404),
    ],
)
async def test_every_error_is_a_problem(
    http: httpx.AsyncClient, operator: dict[str, str], method: str, path: str, status: int
) -> None:
    response = await http.request(method, path, headers=operator)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status and body["detail"]
    if status == 422:
        assert body["errors"] == [{"detail": body["detail"], "parameter": "AccountId"}]


@pytest.mark.parametrize(
    ("body", "status"),
    [(None, 404), (b"  \n", 404), (b"{}", 404), (b"{", 400), (b'{"AccountId": 1}', 422)],
    ids=["none", "blank", "empty object", "not JSON", "wrong type"],
)
async def test_the_rebuild_body_may_be_left_out(
    http: httpx.AsyncClient, operator: dict[str, str], body: bytes | None, status: int
) -> None:
    """The documented optional body: none (or blank) reads as `{}`, so an unknown projection is
    still the answer; a body that is there is read strictly."""
    response = await http.post("/projections/no-such-projection/rebuild", content=body, headers=operator)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    if status == 422:
        assert response.json()["errors"][0]["pointer"] == "/AccountId"


async def test_a_missing_query_parameter_is_named(http: httpx.AsyncClient, tenant: Any) -> None:
    """Litestar's own parameter validation answers problem+json too, naming the parameter."""
    response = await http.get("/queries/GetOrders", headers=tenant.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    [error] = response.json()["errors"]
    assert error["parameter"] == "CustomerName" and error["detail"]
