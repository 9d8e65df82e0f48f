"""The ERP model end to end over HTTP: every command and query, the spending-limit rule, customisation.

Everything goes through the real API, worker and Temporal dev server of the
session (tests/conftest.py); the event store is read directly (superuser pool)
only to check what a command stored or that a refusal stored nothing. Queries
wait for the read models with `ConsistentWith` (the merge of every token the
test's commands returned), never with sleeps.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest

from commands.erp_model import UPCASTERS
from commands.store.event_store import CommandMetadata, EventStore, PendingEvent, StreamWrite
from commands.store.feed import EventFeed
from queries.paging import encode_cursor
from tests.conftest import Tenant, onboard, private_stack

Json = dict[str, Any]

HOME = {"Kind": "Home", "Street": "12 Analytical Row", "City": "London", "Country": "GB"}
OFFICE = {
    "Kind": "Office",
    "Street": "1 Engine Yard",
    "City": "Leeds",
    "PostalCode": "LS1 4AP",
    "Country": "GB",
}


def new_id() -> str:
    return str(uuid.uuid4())


def merge(*tokens: str | None) -> str:
    """One ConsistencyToken covering all of `tokens` (the highest position per stream type)."""
    positions: dict[str, int] = {}
    for token in tokens:
        for part in (token or "").split(","):
            if part:
                stream_type, position = part.split(":")
                positions[stream_type] = max(positions.get(stream_type, 0), int(position))
    return ",".join(f"{t}:{p}" for t, p in sorted(positions.items()))


def assert_problem(response: httpx.Response, status: int) -> Json:
    """`response` is an application/problem+json error with `status` and a human-readable detail."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    assert response.headers.get("content-type", "").startswith("application/problem+json"), response.headers
    body: Json = response.json()
    assert body.get("status") == status, body
    assert isinstance(body.get("detail"), str) and body["detail"].strip(), body
    return body


def lines(*items: tuple[str, int, str]) -> list[Json]:
    return [
        {"ProductCode": code, "Quantity": quantity, "UnitPrice": price} for code, quantity, price in items
    ]


def order_body(
    order_lines: list[Json] | None = None, customer_id: str | None = None, name: str = "Walk-in Wendy"
) -> Json:
    body: Json = {
        "OrderId": new_id(),
        "CustomerName": name,
        "OrderLines": order_lines or lines(("KB-1", 2, "10.00"), ("MS-2", 1, "5.50")),
    }
    if customer_id is not None:
        body["CustomerId"] = customer_id
    return body


def open_amounts(items: list[Json]) -> list[Json]:
    """Customers with OpenAmount as a Decimal (its wire format has a test of its own)."""
    return [{**item, "OpenAmount": Decimal(item["OpenAmount"])} for item in items]


def with_times(items: list[Json], field: str) -> list[Json]:
    return [{**item, field: datetime.fromisoformat(item[field])} for item in items]


async def event_count(pool: asyncpg.Pool[Any], account_id: UUID) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM events WHERE account_id = $1", account_id))


async def stream_events(pool: asyncpg.Pool[Any], account_id: UUID, stream_id: str) -> list[tuple[str, Json]]:
    """The stream's events as every reader gets them: personal fields opened (stored sealed)."""
    events = await EventFeed(UPCASTERS).stream(pool, account_id, stream_id)
    return [(e.name, e.payload) for e in events]


async def committed_at(pool: asyncpg.Pool[Any], account_id: UUID, stream_id: str) -> datetime:
    """When a stream's first event was stored (what IssuedAt and DeliveredAt report)."""
    value: datetime = await pool.fetchval(
        "SELECT commit_time FROM events WHERE account_id = $1 AND stream_id = $2 AND stream_revision = 1",
        account_id,
        stream_id,
    )
    return value


class Erp:
    """One onboarded account, as a client: runs commands, remembers their tokens, queries consistently."""

    def __init__(self, http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool[Any]) -> None:
        self.http = http
        self.tenant = tenant
        self.pool = pool
        self.token = ""

    @property
    def account_id(self) -> UUID:
        return self.tenant.account_id

    async def post(self, command: str, body: Any) -> httpx.Response:
        return await self.http.post(f"/commands/{command}", json=body, headers=self.tenant.headers)

    def saw(self, result: Json) -> Json:
        self.token = merge(self.token, result["ConsistencyToken"])
        return result

    async def ok(self, command: str, body: Any) -> Json:
        response = await self.post(command, body)
        assert response.status_code == 200, f"{command} {body}: {response.status_code} {response.text}"
        result: Json = response.json()
        assert set(result) == {"StreamId", "Revision", "Positions", "ConsistencyToken"}, result
        assert result["ConsistencyToken"] == merge(*(f"{t}:{p}" for t, p in result["Positions"].items()))
        return self.saw(result)

    async def refused(self, command: str, body: Any, status: int = 422) -> str:
        """The command is refused with `status` and stores nothing; returns the detail."""
        before = await self.events()
        detail: str = assert_problem(await self.post(command, body), status)["detail"]
        assert await self.events() == before, f"{command} was refused but stored events"
        return detail

    async def events(self) -> int:
        return await event_count(self.pool, self.account_id)

    async def items(self, query: str, **params: str) -> list[Json]:
        """The query's items once every read model it reads has all this test's commands."""
        if self.token:
            params = {**params, "ConsistentWith": self.token, "Timeout": "30"}
        response = await self.http.get(f"/queries/{query}", params=params, headers=self.tenant.headers)
        assert response.status_code == 200, f"{query} {params}: {response.status_code} {response.text}"
        items: list[Json] = response.json()["Items"]
        return items

    async def absent(self, query: str, **params: str) -> str:
        """A one-element query for an element the account's read model does not have: 404 problem+json
        (once every read model it reads has all this test's commands); its detail."""
        if self.token:
            params = {**params, "ConsistentWith": self.token, "Timeout": "30"}
        response = await self.http.get(f"/queries/{query}", params=params, headers=self.tenant.headers)
        assert response.status_code == 404, f"{query} {params}: {response.status_code} {response.text}"
        assert response.headers["content-type"].startswith("application/problem+json")
        detail: str = response.json()["detail"]
        return detail

    async def pages(self, query: str, limit: int, **params: str) -> list[list[Json]]:
        """Every page of the query, `limit` items each, following `Next` until it is absent."""
        pages: list[list[Json]] = []
        after: str | None = None
        if self.token:
            params = {**params, "ConsistentWith": self.token, "Timeout": "30"}
        while True:
            page_params = {**params, "Limit": str(limit), **({"After": after} if after else {})}
            response = await self.http.get(
                f"/queries/{query}", params=page_params, headers=self.tenant.headers
            )
            assert response.status_code == 200, response.text
            body = response.json()
            pages.append(body["Items"])
            after = body.get("Next")
            if after is None:
                return pages
            assert len(pages) < 100, "paging does not end"

    async def customer_view(self, customer_id: str) -> Json:
        items = await self.items("GetCustomer", CustomerId=customer_id)
        assert len(items) == 1, items
        return open_amounts(items)[0]

    # --- the model's elements, made the ordinary way ---------------------------------------------

    async def person(self, name: str = "Ada Lovelace", **extra: Any) -> str:
        person_id = new_id()
        await self.ok("RegisterPerson", {"PersonId": person_id, "Name": name, **extra})
        return person_id

    async def organisation(self, name: str = "Analytical Engines Ltd", **extra: Any) -> str:
        organisation_id = new_id()
        await self.ok("RegisterOrganisation", {"OrganisationId": organisation_id, "Name": name, **extra})
        return organisation_id

    async def workarea(self, name: str = "North") -> str:
        workarea_id = new_id()
        await self.ok("CreateWorkarea", {"WorkareaId": workarea_id, "Name": name})
        return workarea_id

    async def customer(self, party_id: str, workarea_id: str, limit: str = "100.00", **extra: Any) -> str:
        customer_id = new_id()
        body = {
            "CustomerId": customer_id,
            "PartyId": party_id,
            "WorkareaId": workarea_id,
            "SpendingLimit": limit,
        }
        await self.ok("MakeCustomer", {**body, **extra})
        return customer_id

    async def order(self, customer_id: str | None = None, total: str = "25.50", name: str = "Walk-in") -> str:
        body = order_body(lines(("P-1", 1, total)), customer_id, name)
        await self.ok("PlaceOrder", body)
        order_id: str = body["OrderId"]
        return order_id

    async def deliver(self, order_id: str, workarea_id: str) -> str:
        delivery_id = new_id()
        await self.ok(
            "DeliverOrder", {"DeliveryId": delivery_id, "OrderId": order_id, "WorkareaId": workarea_id}
        )
        return delivery_id

    async def invoice(self, order_id: str) -> str:
        invoice_id = new_id()
        await self.ok("InvoiceOrder", {"InvoiceId": invoice_id, "OrderId": order_id})
        return invoice_id


@pytest.fixture
async def erp(http: httpx.AsyncClient, pool: asyncpg.Pool[Any]) -> Erp:
    return Erp(http, await onboard(http, "ERP model"), pool)


def customer_item(
    customer_id: str,
    party_id: str,
    name: str,
    workarea_id: str,
    limit: str = "100.00",
    open_amount: str = "0",
    **extra: Any,
) -> Json:
    return {
        "CustomerId": customer_id,
        "PartyId": party_id,
        "Name": name,
        "Status": "Active",
        "WorkareaId": workarea_id,
        "SpendingLimit": limit,
        "OpenAmount": Decimal(open_amount),
        "AvailableCredit": f"{max(Decimal(limit) - Decimal(open_amount), Decimal(0)):.2f}",
        "OverLimit": Decimal(open_amount) > Decimal(limit),
        **extra,
    }


# =============================================================================================
# Parties: RegisterPerson, RenamePerson, RegisterOrganisation, RenameOrganisation, ChangeAddress


async def test_register_and_rename_a_person(erp: Erp) -> None:
    person_id = new_id()
    registered = await erp.ok(
        "RegisterPerson", {"PersonId": person_id, "Name": "Ada Byron", "Email": "ada@example.com"}
    )
    assert registered["StreamId"] == f"Person-{person_id}"
    assert registered["Revision"] == 1
    assert registered["Positions"] == {"Person": 1}

    renamed = await erp.ok("RenamePerson", {"PersonId": person_id, "Name": "Ada Lovelace"})
    assert (renamed["StreamId"], renamed["Revision"], renamed["Positions"]) == (
        f"Person-{person_id}",
        2,
        {"Person": 2},
    )
    assert await stream_events(erp.pool, erp.account_id, f"Person-{person_id}") == [
        ("PersonRegistered", {"PersonId": person_id, "Name": "Ada Byron", "Email": "ada@example.com"}),
        ("Renamed", {"PersonId": person_id, "Name": "Ada Lovelace"}),
    ]

    detail = await erp.refused("RegisterPerson", {"PersonId": person_id, "Name": "Someone Else"})
    assert "already exists" in detail and person_id in detail
    await erp.refused("RenamePerson", {"PersonId": new_id(), "Name": "Nobody"}, 404)
    organisation_id = await erp.organisation()
    # RenamePerson renames persons only.
    await erp.refused("RenamePerson", {"PersonId": organisation_id, "Name": "Not a person"}, 404)

    workarea_id = await erp.workarea()
    customer_id = await erp.customer(person_id, workarea_id)
    assert await erp.customer_view(customer_id) == customer_item(
        customer_id, person_id, "Ada Lovelace", workarea_id, Email="ada@example.com", Addresses=[]
    )


async def test_register_and_rename_an_organisation(erp: Erp) -> None:
    organisation_id = new_id()
    registered = await erp.ok(
        "RegisterOrganisation", {"OrganisationId": organisation_id, "Name": "Babbage & Co"}
    )
    assert (registered["StreamId"], registered["Revision"], registered["Positions"]) == (
        f"Organisation-{organisation_id}",
        1,
        {"Organisation": 1},
    )
    renamed = await erp.ok("RenameOrganisation", {"OrganisationId": organisation_id, "Name": "Engines Ltd"})
    assert (renamed["Revision"], renamed["Positions"]) == (2, {"Organisation": 2})

    detail = await erp.refused("RegisterOrganisation", {"OrganisationId": organisation_id, "Name": "Again"})
    assert "already exists" in detail
    await erp.refused("RenameOrganisation", {"OrganisationId": new_id(), "Name": "Nobody"}, 404)
    person_id = await erp.person()
    await erp.refused("RenameOrganisation", {"OrganisationId": person_id, "Name": "Not an org"}, 404)

    workarea_id = await erp.workarea()
    customer_id = await erp.customer(organisation_id, workarea_id)
    assert await erp.customer_view(customer_id) == customer_item(
        customer_id, organisation_id, "Engines Ltd", workarea_id, Addresses=[]
    )


async def test_change_address_of_a_person_and_of_an_organisation(erp: Erp) -> None:
    person_id = await erp.person("Ada Lovelace")
    organisation_id = await erp.organisation("Engines Ltd")

    first = await erp.ok("ChangeAddress", {"PartyId": person_id, "Address": HOME})
    assert (first["StreamId"], first["Revision"]) == (f"Person-{person_id}", 2)
    second = await erp.ok("ChangeAddress", {"PartyId": person_id, "Address": OFFICE})
    assert second["Revision"] == 3
    of_organisation = await erp.ok("ChangeAddress", {"PartyId": organisation_id, "Address": OFFICE})
    assert (of_organisation["StreamId"], of_organisation["Revision"], of_organisation["Positions"]) == (
        f"Organisation-{organisation_id}",
        2,
        {"Organisation": 2},
    )
    assert (await stream_events(erp.pool, erp.account_id, f"Organisation-{organisation_id}"))[1] == (
        "AddressChanged",
        {"PartyId": organisation_id, "Address": OFFICE},
    )

    detail = await erp.refused("ChangeAddress", {"PartyId": new_id(), "Address": HOME}, 404)
    assert "does not exist" in detail
    workarea_id = await erp.workarea()
    # A workarea is not a party.
    await erp.refused("ChangeAddress", {"PartyId": workarea_id, "Address": HOME}, 404)

    person_customer = await erp.customer(person_id, workarea_id)
    organisation_customer = await erp.customer(organisation_id, workarea_id)
    assert (await erp.customer_view(person_customer))["Addresses"] == [HOME, OFFICE]
    assert (await erp.customer_view(organisation_customer))["Addresses"] == [OFFICE]


# =============================================================================================
# SetUpOwnOrganisation, CreateWorkarea, MakeCustomer, ChangeSpendingLimit


async def test_set_up_own_organisation(erp: Erp) -> None:
    own_id = new_id()
    result = await erp.ok("SetUpOwnOrganisation", {"OwnOrganisationId": own_id, "Name": "Our Company"})
    assert (result["StreamId"], result["Revision"], result["Positions"]) == (
        f"OwnOrganisation-{own_id}",
        1,
        {"OwnOrganisation": 1},
    )
    assert "already exists" in await erp.refused(
        "SetUpOwnOrganisation", {"OwnOrganisationId": own_id, "Name": "Twice"}
    )

    person_id, workarea_id = await erp.person(), await erp.workarea()
    customer_id = await erp.customer(person_id, workarea_id, OwnOrganisationId=own_id)
    assert (await erp.customer_view(customer_id))["OwnOrganisationId"] == own_id

    unknown = new_id()
    detail = await erp.refused(
        "MakeCustomer",
        {
            "CustomerId": new_id(),
            "PartyId": person_id,
            "WorkareaId": workarea_id,
            "OwnOrganisationId": unknown,
            "SpendingLimit": "1.00",
        },
    )
    assert "OwnOrganisation" in detail and unknown in detail


async def test_create_workarea(erp: Erp) -> None:
    workarea_id = new_id()
    result = await erp.ok("CreateWorkarea", {"WorkareaId": workarea_id, "Name": "North"})
    assert (result["StreamId"], result["Revision"], result["Positions"]) == (
        f"Workarea-{workarea_id}",
        1,
        {"Workarea": 1},
    )
    assert "already exists" in await erp.refused(
        "CreateWorkarea", {"WorkareaId": workarea_id, "Name": "South"}
    )
    assert await stream_events(erp.pool, erp.account_id, f"Workarea-{workarea_id}") == [
        ("WorkareaCreated", {"WorkareaId": workarea_id, "Name": "North"})
    ]


async def test_make_customer_of_a_person_and_of_an_organisation(erp: Erp) -> None:
    person_id = await erp.person("Ada Lovelace")
    organisation_id = await erp.organisation("Engines Ltd")
    workarea_id = await erp.workarea()

    customer_id = new_id()
    body = {
        "CustomerId": customer_id,
        "PartyId": person_id,
        "WorkareaId": workarea_id,
        "SpendingLimit": "250.00",
    }
    result = await erp.ok("MakeCustomer", body)
    assert (result["StreamId"], result["Revision"], result["Positions"]) == (
        f"Customer-{customer_id}",
        1,
        {"Customer": 1},
    )
    assert await stream_events(erp.pool, erp.account_id, f"Customer-{customer_id}") == [
        ("CustomerMade", body)
    ]
    organisation_customer = await erp.customer(organisation_id, workarea_id, "50.00")

    assert await erp.customer_view(customer_id) == customer_item(
        customer_id, person_id, "Ada Lovelace", workarea_id, "250.00", Addresses=[]
    )
    assert await erp.customer_view(organisation_customer) == customer_item(
        organisation_customer, organisation_id, "Engines Ltd", workarea_id, "50.00", Addresses=[]
    )

    assert "already exists" in await erp.refused("MakeCustomer", {**body, "SpendingLimit": "1.00"})
    unknown = new_id()
    detail = await erp.refused("MakeCustomer", {**body, "CustomerId": new_id(), "PartyId": unknown})
    assert unknown in detail and "does not exist" in detail
    # A workarea is not a party, a party is not a workarea.
    await erp.refused("MakeCustomer", {**body, "CustomerId": new_id(), "PartyId": workarea_id})
    detail = await erp.refused("MakeCustomer", {**body, "CustomerId": new_id(), "WorkareaId": unknown})
    assert "Workarea" in detail and unknown in detail
    await erp.refused("MakeCustomer", {**body, "CustomerId": new_id(), "WorkareaId": person_id})


async def test_making_one_customer_concurrently_succeeds_once(erp: Erp) -> None:
    person_id, workarea_id = await erp.person(), await erp.workarea()
    body = {"CustomerId": new_id(), "PartyId": person_id, "WorkareaId": workarea_id, "SpendingLimit": "9.00"}
    responses = await asyncio.gather(*(erp.post("MakeCustomer", body) for _ in range(6)))
    assert sorted(r.status_code for r in responses) == [200] + [422] * 5, [r.text for r in responses]
    for refused in (r for r in responses if r.status_code != 200):
        assert "already exists" in assert_problem(refused, 422)["detail"]
    assert len(await stream_events(erp.pool, erp.account_id, f"Customer-{body['CustomerId']}")) == 1


async def test_change_spending_limit(erp: Erp) -> None:
    person_id, workarea_id = await erp.person(), await erp.workarea()
    customer_id = await erp.customer(person_id, workarea_id, "100.00")
    result = await erp.ok("ChangeSpendingLimit", {"CustomerId": customer_id, "SpendingLimit": "75.50"})
    assert (result["StreamId"], result["Revision"], result["Positions"]["Customer"]) == (
        f"Customer-{customer_id}",
        2,
        2,
    )
    assert (await erp.customer_view(customer_id))["SpendingLimit"] == "75.50"
    assert "does not exist" in await erp.refused(
        "ChangeSpendingLimit", {"CustomerId": new_id(), "SpendingLimit": "1.00"}, 404
    )


# =============================================================================================
# PlaceOrder, CancelOrder, DeliverOrder, InvoiceOrder, PayInvoice


async def test_place_order_with_the_seeds_payload(erp: Erp) -> None:
    """The skeleton's contract: no CustomerId, nothing reserved anywhere, GetOrders by CustomerName."""
    body = order_body(name="Grace Hopper")
    result = await erp.ok("PlaceOrder", body)
    assert result == {
        "StreamId": f"Order-{body['OrderId']}",
        "Revision": 1,
        "Positions": {"Order": 1},
        "ConsistencyToken": "Order:1",
    }
    assert await stream_events(erp.pool, erp.account_id, f"Order-{body['OrderId']}") == [
        ("OrderPlaced", {**body, "Total": "25.50"})
    ]
    assert await erp.items("GetOrders", CustomerName="Grace Hopper") == [
        {
            "OrderId": body["OrderId"],
            "CustomerName": "Grace Hopper",
            "Status": "Placed",
            "Total": "25.50",
            "OrderLines": body["OrderLines"],
        }
    ]
    assert "already exists" in await erp.refused("PlaceOrder", body)


async def test_place_order_for_a_customer_reserves_its_total(erp: Erp) -> None:
    person_id, workarea_id = await erp.person("Ada Lovelace"), await erp.workarea()
    customer_id = await erp.customer(person_id, workarea_id, "100.00")
    body = order_body(lines(("KB-1", 3, "10.00"), ("MS-2", 2, "0.25")), customer_id, "Ada L.")
    result = await erp.ok("PlaceOrder", body)
    assert result["StreamId"] == f"Order-{body['OrderId']}"
    assert result["Revision"] == 1
    assert result["Positions"] == {"Order": 1, "Customer": 2}
    assert result["ConsistencyToken"] == "Customer:2,Order:1"

    made = {
        "CustomerId": customer_id,
        "PartyId": person_id,
        "WorkareaId": workarea_id,
        "SpendingLimit": "100.00",
    }
    assert await stream_events(erp.pool, erp.account_id, f"Customer-{customer_id}") == [
        ("CustomerMade", made),
        ("AmountReserved", {"CustomerId": customer_id, "OrderId": body["OrderId"], "Amount": "30.50"}),
    ]
    assert (await erp.customer_view(customer_id))["OpenAmount"] == Decimal("30.50")
    # Linked to a customer, the order shows the customer's name.
    assert await erp.items("GetOrders", CustomerName="Ada Lovelace") == [
        {
            "OrderId": body["OrderId"],
            "CustomerName": "Ada Lovelace",
            "Status": "Placed",
            "Total": "30.50",
            "OrderLines": body["OrderLines"],
            "CustomerId": customer_id,
        }
    ]

    # The same order id again: refused before anything is reserved.
    assert "already exists" in await erp.refused("PlaceOrder", body)
    unknown = new_id()
    detail = await erp.refused("PlaceOrder", order_body(customer_id=unknown))
    assert "Customer" in detail and unknown in detail
    await erp.refused("PlaceOrder", order_body(customer_id=person_id))
    assert (await erp.customer_view(customer_id))["OpenAmount"] == Decimal("30.50")


async def test_cancel_order(erp: Erp) -> None:
    person_id, workarea_id = await erp.person(), await erp.workarea()
    customer_id = await erp.customer(person_id, workarea_id, "100.00")
    order_id = await erp.order(customer_id, "40.00")
    walk_in = await erp.order(None, "5.00", "Walk-in Walt")

    result = await erp.ok("CancelOrder", {"OrderId": order_id, "Reason": "changed my mind"})
    assert result["StreamId"] == f"Order-{order_id}"
    assert result["Revision"] == 2
    assert result["Positions"] == {"Order": 3, "Customer": 3}
    assert (await stream_events(erp.pool, erp.account_id, f"Customer-{customer_id}"))[-1] == (
        "AmountReleased",
        {"CustomerId": customer_id, "OrderId": order_id, "Amount": "40.00"},
    )
    without_customer = await erp.ok("CancelOrder", {"OrderId": walk_in, "Reason": "wrong size"})
    assert without_customer["Positions"] == {"Order": 4}

    detail = await erp.refused("CancelOrder", {"OrderId": order_id, "Reason": "again"})
    assert "Cancelled" in detail
    await erp.refused("CancelOrder", {"OrderId": new_id(), "Reason": "unknown"}, 404)
    assert (await erp.customer_view(customer_id))["OpenAmount"] == Decimal("0")
    statuses = [
        (i["OrderId"], i["Status"]) for i in await erp.items("GetOrders", CustomerName="Walk-in Walt")
    ]
    assert statuses == [(walk_in, "Cancelled")]

    delivered = await erp.order(customer_id, "1.00")
    await erp.deliver(delivered, workarea_id)
    assert "Delivered" in await erp.refused("CancelOrder", {"OrderId": delivered, "Reason": "too late"})
    invoiced = await erp.order(customer_id, "1.00")
    await erp.invoice(invoiced)
    assert "Invoiced" in await erp.refused("CancelOrder", {"OrderId": invoiced, "Reason": "too late"})


async def test_deliver_invoice_and_pay_an_order(erp: Erp) -> None:
    person_id, workarea_id = await erp.person("Ada Lovelace"), await erp.workarea()
    customer_id = await erp.customer(person_id, workarea_id, "100.00")
    order_id = await erp.order(customer_id, "60.00")

    delivery_id = new_id()
    delivery = {"DeliveryId": delivery_id, "OrderId": order_id, "WorkareaId": workarea_id}
    delivered = await erp.ok("DeliverOrder", delivery)
    assert (delivered["StreamId"], delivered["Revision"]) == (f"Delivery-{delivery_id}", 1)
    assert set(delivered["Positions"]) == {"Delivery", "Order"}
    assert (await erp.items("GetOrders", CustomerName="Ada Lovelace"))[0]["Status"] == "Delivered"
    assert "already exists" in await erp.refused("DeliverOrder", delivery)

    invoice_id = new_id()
    invoiced = await erp.ok("InvoiceOrder", {"InvoiceId": invoice_id, "OrderId": order_id})
    assert (invoiced["StreamId"], invoiced["Revision"]) == (f"Invoice-{invoice_id}", 1)
    assert set(invoiced["Positions"]) == {"Invoice", "Order"}
    assert await stream_events(erp.pool, erp.account_id, f"Invoice-{invoice_id}") == [
        (
            "InvoiceIssued",
            {"InvoiceId": invoice_id, "OrderId": order_id, "CustomerId": customer_id, "Amount": "60.00"},
        )
    ]
    assert (await erp.items("GetOrders", CustomerName="Ada Lovelace"))[0]["Status"] == "Invoiced"
    assert "already exists" in await erp.refused(
        "InvoiceOrder", {"InvoiceId": invoice_id, "OrderId": order_id}
    )
    assert "Invoiced" in await erp.refused("InvoiceOrder", {"InvoiceId": new_id(), "OrderId": order_id})
    # Invoicing does not free the amount; paying does.
    assert (await erp.customer_view(customer_id))["OpenAmount"] == Decimal("60.00")
    assert [i["InvoiceId"] for i in await erp.items("GetOpenInvoices")] == [invoice_id]

    paid = await erp.ok("PayInvoice", {"InvoiceId": invoice_id})
    assert (paid["StreamId"], paid["Revision"]) == (f"Invoice-{invoice_id}", 2)
    assert set(paid["Positions"]) == {"Invoice", "Order", "Customer"}
    assert (await stream_events(erp.pool, erp.account_id, f"Order-{order_id}"))[-1] == (
        "OrderPaid",
        {"OrderId": order_id, "InvoiceId": invoice_id},
    )
    assert "Paid" in await erp.refused("PayInvoice", {"InvoiceId": invoice_id})
    await erp.refused("PayInvoice", {"InvoiceId": new_id()}, 404)
    await erp.refused("PayInvoice", {"InvoiceId": order_id}, 404)

    assert (await erp.items("GetOrders", CustomerName="Ada Lovelace"))[0]["Status"] == "Paid"
    assert await erp.items("GetOpenInvoices") == []
    assert (await erp.customer_view(customer_id))["OpenAmount"] == Decimal("0")
    # A paid order is done with; it was delivered once already.
    assert "already delivered" in await erp.refused(
        "DeliverOrder", {"DeliveryId": new_id(), "OrderId": order_id, "WorkareaId": workarea_id}
    )
    assert "Paid" in await erp.refused("CancelOrder", {"OrderId": order_id, "Reason": "too late"})
    assert "Paid" in await erp.refused("InvoiceOrder", {"InvoiceId": new_id(), "OrderId": order_id})


async def test_an_order_can_be_invoiced_before_it_is_delivered(erp: Erp) -> None:
    workarea_id = await erp.workarea()
    order_id = await erp.order(None, "12.00", "Early Invoice Ivy")
    invoice_id = await erp.invoice(order_id)
    delivery_id = await erp.deliver(order_id, workarea_id)
    assert (await erp.items("GetOrders", CustomerName="Early Invoice Ivy"))[0]["Status"] == "Invoiced"
    assert [d["DeliveryId"] for d in await erp.items("GetDeliveries", WorkareaId=workarea_id)] == [
        delivery_id
    ]
    assert "already delivered" in await erp.refused(
        "DeliverOrder", {"DeliveryId": new_id(), "OrderId": order_id, "WorkareaId": workarea_id}
    )
    await erp.ok("PayInvoice", {"InvoiceId": invoice_id})
    assert (await erp.items("GetOrders", CustomerName="Early Invoice Ivy"))[0]["Status"] == "Paid"

    # Paid in advance, delivered afterwards.
    prepaid = await erp.order(None, "5.00", "Prepaid Pat")
    await erp.ok("PayInvoice", {"InvoiceId": await erp.invoice(prepaid)})
    await erp.deliver(prepaid, workarea_id)
    assert (await erp.items("GetOrders", CustomerName="Prepaid Pat"))[0]["Status"] == "Paid"


async def test_activities_on_orders_that_cannot_have_them_are_refused(erp: Erp) -> None:
    workarea_id = await erp.workarea()
    cancelled = await erp.order()
    await erp.ok("CancelOrder", {"OrderId": cancelled, "Reason": "x"})

    unknown = new_id()
    detail = await erp.refused(
        "DeliverOrder", {"DeliveryId": new_id(), "OrderId": unknown, "WorkareaId": workarea_id}
    )
    assert "Order" in detail and unknown in detail
    detail = await erp.refused(
        "DeliverOrder", {"DeliveryId": new_id(), "OrderId": cancelled, "WorkareaId": workarea_id}
    )
    assert "Cancelled" in detail
    placed = await erp.order()
    detail = await erp.refused(
        "DeliverOrder", {"DeliveryId": new_id(), "OrderId": placed, "WorkareaId": unknown}
    )
    assert "Workarea" in detail and unknown in detail
    detail = await erp.refused("InvoiceOrder", {"InvoiceId": new_id(), "OrderId": unknown})
    assert "Order" in detail and unknown in detail
    assert "Cancelled" in await erp.refused("InvoiceOrder", {"InvoiceId": new_id(), "OrderId": cancelled})


@pytest.mark.parametrize(
    "invoice_first", [False, True], ids=["delivered then invoiced", "invoiced then delivered"]
)
async def test_an_order_is_delivered_only_once(erp: Erp, invoice_first: bool) -> None:
    workarea_id = await erp.workarea()
    order_id = await erp.order(None, "10.00", "Once Only Olga")
    if invoice_first:
        await erp.invoice(order_id)
        await erp.deliver(order_id, workarea_id)
    else:
        await erp.deliver(order_id, workarea_id)
        await erp.invoice(order_id)
    await erp.refused(
        "DeliverOrder", {"DeliveryId": new_id(), "OrderId": order_id, "WorkareaId": workarea_id}
    )
    assert len(await erp.items("GetDeliveries", WorkareaId=workarea_id)) == 1


# =============================================================================================
# Queries


async def test_get_orders_by_customer_name(erp: Erp) -> None:
    person_id, workarea_id = await erp.person("Charles Babbage"), await erp.workarea()
    customer_id = await erp.customer(person_id, workarea_id, "1000.00")
    first = order_body(lines(("A", 1, "1.00")), None, "Charles Babbage")
    second = order_body(lines(("B", 2, "2.50"), ("C", 1, "0.99")), customer_id, "C. Babbage")
    other = order_body(lines(("D", 1, "3.00")), None, "Someone Else")
    for body in (first, second, other):
        await erp.ok("PlaceOrder", body)
    await erp.ok("CancelOrder", {"OrderId": first["OrderId"], "Reason": "duplicate"})

    assert await erp.items("GetOrders", CustomerName="Charles Babbage") == [
        {
            "OrderId": first["OrderId"],
            "CustomerName": "Charles Babbage",
            "Status": "Cancelled",
            "Total": "1.00",
            "OrderLines": first["OrderLines"],
        },
        {
            "OrderId": second["OrderId"],
            "CustomerName": "Charles Babbage",
            "Status": "Placed",
            "Total": "5.99",
            "OrderLines": second["OrderLines"],
            "CustomerId": customer_id,
        },
    ]
    assert await erp.items("GetOrders", CustomerName="C. Babbage") == []
    assert [i["OrderId"] for i in await erp.items("GetOrders", CustomerName="Someone Else")] == [
        other["OrderId"]
    ]
    assert await erp.items("GetOrders", CustomerName="charles babbage") == []


async def test_get_customers_all_and_by_workarea(erp: Erp) -> None:
    north, south = await erp.workarea("North"), await erp.workarea("South")
    ada, grace = await erp.person("Ada Lovelace"), await erp.person("Grace Hopper", Email="grace@example.com")
    engines = await erp.organisation("Engines Ltd")
    await erp.ok("ChangeAddress", {"PartyId": ada, "Address": HOME})
    ada_north = await erp.customer(ada, north, "10.00")
    engines_north = await erp.customer(engines, north, "5000.00")
    grace_south = await erp.customer(grace, south, "20.00")
    await erp.order(ada_north, "7.25")

    ada_item = customer_item(ada_north, ada, "Ada Lovelace", north, "10.00", "7.25")
    engines_item = customer_item(engines_north, engines, "Engines Ltd", north, "5000.00")
    grace_item = customer_item(grace_south, grace, "Grace Hopper", south, "20.00")
    # Ordered by name; the list leaves out addresses and email (GetCustomer has them).
    assert open_amounts(await erp.items("GetCustomers")) == [ada_item, engines_item, grace_item]
    assert open_amounts(await erp.items("GetCustomers", WorkareaId=north)) == [ada_item, engines_item]
    assert open_amounts(await erp.items("GetCustomers", WorkareaId=south)) == [grace_item]
    assert await erp.items("GetCustomers", WorkareaId=new_id()) == []


async def test_get_customer_with_addresses_spending_limit_and_open_amount(erp: Erp) -> None:
    own_id = new_id()
    await erp.ok("SetUpOwnOrganisation", {"OwnOrganisationId": own_id, "Name": "Us"})
    workarea_id = await erp.workarea()
    person_id = await erp.person("Ada Lovelace", Email="ada@example.com")
    await erp.ok("ChangeAddress", {"PartyId": person_id, "Address": HOME})
    await erp.ok("ChangeAddress", {"PartyId": person_id, "Address": OFFICE})
    customer_id = await erp.customer(person_id, workarea_id, "500.00", OwnOrganisationId=own_id)
    kept = await erp.order(customer_id, "120.00")
    await erp.order(customer_id, "30.05")
    cancelled = await erp.order(customer_id, "99.99")
    await erp.ok("CancelOrder", {"OrderId": cancelled, "Reason": "x"})
    paid = await erp.order(customer_id, "10.00")
    await erp.ok("PayInvoice", {"InvoiceId": await erp.invoice(paid)})
    await erp.invoice(kept)

    assert await erp.customer_view(customer_id) == customer_item(
        customer_id,
        person_id,
        "Ada Lovelace",
        workarea_id,
        "500.00",
        "150.05",
        OwnOrganisationId=own_id,
        Email="ada@example.com",
        Addresses=[HOME, OFFICE],
    )
    unknown = new_id()
    assert unknown in await erp.absent("GetCustomer", CustomerId=unknown)
    await erp.absent("GetCustomer", CustomerId=person_id)


async def test_money_in_customers_always_has_two_decimals(erp: Erp) -> None:
    """A fresh customer's OpenAmount is money like any other: "0.00", as after an order is released."""
    person_id, workarea_id = await erp.person(), await erp.workarea()
    fresh = await erp.customer(person_id, workarea_id, "100")
    released = await erp.customer(person_id, workarea_id, "100")
    await erp.ok("CancelOrder", {"OrderId": await erp.order(released, "1.00"), "Reason": "x"})
    views = {i["CustomerId"]: i for i in await erp.items("GetCustomers")}
    assert (views[released]["SpendingLimit"], views[released]["OpenAmount"]) == ("100.00", "0.00")
    assert (views[fresh]["SpendingLimit"], views[fresh]["OpenAmount"]) == ("100.00", "0.00")
    assert (await erp.items("GetCustomer", CustomerId=fresh))[0]["OpenAmount"] == "0.00"


async def test_money_is_stored_and_answered_with_two_decimals_however_it_was_sent(erp: Erp) -> None:
    """The grammar lets "10", "0.5" and "007" through; every event and every answer says "10.00"."""
    for element, attribute in (("Customer", "Deposit"), ("Order", "Tip")):
        definition = {"Element": element, "Attribute": attribute, "Type": "money"}
        response = await erp.http.post("/customisations", json=definition, headers=erp.tenant.headers)
        assert response.status_code == 201, response.text
    person_id, workarea_id = await erp.person("Norma Normal"), await erp.workarea()
    customer_id = new_id()
    made = {"CustomerId": customer_id, "PartyId": person_id, "WorkareaId": workarea_id}
    await erp.ok("MakeCustomer", {**made, "SpendingLimit": "1000", "Custom": {"Deposit": "5"}})
    order = order_body(lines(("A", 2, "10"), ("B", 1, "0.5"), ("C", 3, "007")), customer_id, "Norma Normal")
    await erp.ok("PlaceOrder", {**order, "Custom": {"Tip": "1.5"}})
    invoice_id = await erp.invoice(order["OrderId"])
    await erp.ok("ChangeSpendingLimit", {"CustomerId": customer_id, "SpendingLimit": "999999999999"})

    normal_lines = lines(("A", 2, "10.00"), ("B", 1, "0.50"), ("C", 3, "7.00"))
    reserved = {"CustomerId": customer_id, "OrderId": order["OrderId"], "Amount": "41.50"}
    assert await stream_events(erp.pool, erp.account_id, f"Customer-{customer_id}") == [
        ("CustomerMade", {**made, "SpendingLimit": "1000.00", "Custom": {"Deposit": "5.00"}}),
        ("AmountReserved", reserved),
        ("SpendingLimitChanged", {"CustomerId": customer_id, "SpendingLimit": "999999999999.00"}),
    ]
    [(_, placed), _] = await stream_events(erp.pool, erp.account_id, f"Order-{order['OrderId']}")
    assert (placed["OrderLines"], placed["Total"], placed["Custom"]) == (
        normal_lines,
        "41.50",
        {"Tip": "1.50"},
    )
    [(_, issued)] = await stream_events(erp.pool, erp.account_id, f"Invoice-{invoice_id}")
    assert issued["Amount"] == "41.50"

    view = await erp.customer_view(customer_id)
    assert (view["SpendingLimit"], view["AvailableCredit"], view["Custom"]) == (
        "999999999999.00",
        "999999999957.50",
        {"Deposit": "5.00"},
    )
    [listed] = await erp.items("GetOrders", CustomerName="Norma Normal")
    assert (listed["Total"], listed["OrderLines"], listed["Custom"]) == (
        "41.50",
        normal_lines,
        {"Tip": "1.50"},
    )
    [open_invoice] = await erp.items("GetOpenInvoices", CustomerId=customer_id)
    assert open_invoice["Amount"] == "41.50"


async def test_money_stored_by_older_versions_loads_and_is_answered_with_two_decimals(erp: Erp) -> None:
    """Before money had one grammar, events stored Python's text of the amount sent ("1E+3", "-0"):
    they still load (commands decide on them, events raised from them are stored normally) and
    project, and every answer has two decimals."""
    person_id, workarea_id = await erp.person("Olga Older"), await erp.workarea()
    customer_id, order_id = new_id(), new_id()
    old_lines = [
        {"ProductCode": "A", "Quantity": 2, "UnitPrice": "2.5E+2"},
        {"ProductCode": "B", "Quantity": 1, "UnitPrice": "-0"},
    ]
    made = {
        "CustomerId": customer_id,
        "PartyId": person_id,
        "WorkareaId": workarea_id,
        "SpendingLimit": "1E+3",
    }
    reserved = {"CustomerId": customer_id, "OrderId": order_id, "Amount": "5E+2"}
    placed = {
        "OrderId": order_id,
        "CustomerName": "Olga Older",
        "OrderLines": old_lines,
        "CustomerId": customer_id,
        "Total": "5E+2",
    }
    command_id = uuid.uuid4()
    appended = await EventStore().append(
        erp.pool,
        erp.account_id,
        [
            StreamWrite(
                f"Customer-{customer_id}",
                "Customer",
                0,
                [PendingEvent("CustomerMade", made), PendingEvent("AmountReserved", reserved)],
            ),
            StreamWrite(f"Order-{order_id}", "Order", 0, [PendingEvent("OrderPlaced", placed)]),
        ],
        CommandMetadata(command_id, command_id, command_id),
    )
    erp.token = merge(erp.token, *(f"{t}:{p}" for t, p in appended.positions.items()))

    [listed] = await erp.items("GetOrders", CustomerName="Olga Older")
    assert (listed["Total"], listed["OrderLines"]) == ("500.00", lines(("A", 2, "250.00"), ("B", 1, "0.00")))
    assert await erp.customer_view(customer_id) == customer_item(
        customer_id, person_id, "Olga Older", workarea_id, "1000.00", "500.00", Addresses=[]
    )

    # Commands decide on them.
    await erp.order(customer_id, "500.00")
    detail = await erp.refused("PlaceOrder", order_body(lines(("X", 1, "0.01")), customer_id))
    assert "spending limit of 1000.00 and an open amount of 1000.00" in detail, detail
    invoice_id = await erp.invoice(order_id)
    await erp.ok("PayInvoice", {"InvoiceId": invoice_id})
    [(_, issued), _] = await stream_events(erp.pool, erp.account_id, f"Invoice-{invoice_id}")
    assert issued["Amount"] == "500.00"
    released = (await stream_events(erp.pool, erp.account_id, f"Customer-{customer_id}"))[-1]
    assert released == ("AmountReleased", {**reserved, "Amount": "500.00"})
    assert (await erp.customer_view(customer_id))["OpenAmount"] == Decimal("500.00")


async def test_get_open_invoices(erp: Erp) -> None:
    person_id, workarea_id = await erp.person("Ada Lovelace"), await erp.workarea()
    customer_id = await erp.customer(person_id, workarea_id, "1000.00")
    for_customer = await erp.order(customer_id, "45.00")
    walk_in = await erp.order(None, "12.34", "Walk-in Walt")
    settled = await erp.order(customer_id, "1.00")
    await erp.order(customer_id, "2.00")  # placed, never invoiced
    first = await erp.invoice(for_customer)
    second = await erp.invoice(walk_in)
    await erp.ok("PayInvoice", {"InvoiceId": await erp.invoice(settled)})

    first_at = await committed_at(erp.pool, erp.account_id, f"Invoice-{first}")
    second_at = await committed_at(erp.pool, erp.account_id, f"Invoice-{second}")
    first_item = {
        "InvoiceId": first,
        "OrderId": for_customer,
        "Amount": "45.00",
        "CustomerName": "Ada Lovelace",
        "IssuedAt": first_at,
        "CustomerId": customer_id,
    }
    second_item = {
        "InvoiceId": second,
        "OrderId": walk_in,
        "Amount": "12.34",
        "CustomerName": "Walk-in Walt",
        "IssuedAt": second_at,
    }
    assert with_times(await erp.items("GetOpenInvoices"), "IssuedAt") == [first_item, second_item]
    assert with_times(await erp.items("GetOpenInvoices", CustomerId=customer_id), "IssuedAt") == [first_item]
    assert await erp.items("GetOpenInvoices", CustomerId=new_id()) == []


async def test_get_deliveries_by_workarea(erp: Erp) -> None:
    north, south = await erp.workarea("North"), await erp.workarea("South")
    person_id = await erp.person("Ada Lovelace")
    customer_id = await erp.customer(person_id, north, "1000.00")
    ada_order = await erp.order(customer_id, "10.00")
    walk_in = await erp.order(None, "3.00", "Walk-in Walt")
    southern = await erp.order(None, "4.00", "Southern Sam")
    first = await erp.deliver(ada_order, north)
    second = await erp.deliver(walk_in, north)
    third = await erp.deliver(southern, south)

    def item(delivery_id: str, order_id: str, workarea_id: str, name: str, at: datetime) -> Json:
        return {
            "DeliveryId": delivery_id,
            "OrderId": order_id,
            "WorkareaId": workarea_id,
            "CustomerName": name,
            "DeliveredAt": at,
        }

    async def at(delivery_id: str) -> datetime:
        return await committed_at(erp.pool, erp.account_id, f"Delivery-{delivery_id}")

    assert with_times(await erp.items("GetDeliveries", WorkareaId=north), "DeliveredAt") == [
        item(first, ada_order, north, "Ada Lovelace", await at(first)),
        item(second, walk_in, north, "Walk-in Walt", await at(second)),
    ]
    assert with_times(await erp.items("GetDeliveries", WorkareaId=south), "DeliveredAt") == [
        item(third, southern, south, "Southern Sam", await at(third))
    ]
    assert await erp.items("GetDeliveries", WorkareaId=new_id()) == []


@pytest.mark.parametrize(
    ("query", "params", "field"),
    [
        pytest.param("GetCustomer", {}, "CustomerId", id="GetCustomer without CustomerId"),
        pytest.param("GetCustomer", {"CustomerId": "nope"}, "CustomerId", id="GetCustomer bad CustomerId"),
        pytest.param("GetCustomers", {"WorkareaId": "nope"}, "WorkareaId", id="GetCustomers bad WorkareaId"),
        pytest.param("GetCustomers", {"Colour": "red"}, "Colour", id="GetCustomers unknown parameter"),
        pytest.param("GetDeliveries", {}, "WorkareaId", id="GetDeliveries without WorkareaId"),
        pytest.param("GetDeliveries", {"WorkareaId": "1"}, "WorkareaId", id="GetDeliveries bad WorkareaId"),
        pytest.param(
            "GetOpenInvoices", {"CustomerId": "x"}, "CustomerId", id="GetOpenInvoices bad CustomerId"
        ),
        pytest.param("GetOrders", {"CustomerName": ""}, "CustomerName", id="GetOrders empty CustomerName"),
        pytest.param("GetOrders", {"CustomerName": "A", "Limit": "0"}, "Limit", id="GetOrders Limit 0"),
        pytest.param("GetOrders", {"CustomerName": "A", "Limit": "1001"}, "Limit", id="GetOrders Limit 1001"),
        pytest.param("GetCustomers", {"Limit": "ten"}, "Limit", id="GetCustomers Limit not a number"),
        pytest.param("GetOrders", {"CustomerName": "A", "After": "nope"}, "After", id="GetOrders bad After"),
        pytest.param(
            "GetDeliveries",
            # A cursor of GetCustomers (a name first), not of GetDeliveries (a time first).
            {"WorkareaId": str(UUID(int=1)), "After": encode_cursor(["Ada", str(UUID(int=1))])},
            "After",
            id="GetDeliveries another query's cursor",
        ),
    ],
)
async def test_query_parameters_are_validated(
    http: httpx.AsyncClient, tenant: Tenant, query: str, params: dict[str, str], field: str
) -> None:
    response = await http.get(f"/queries/{query}", params=params, headers=tenant.headers)
    assert field in assert_problem(response, 422)["detail"]


# =============================================================================================
# The spending-limit rule


async def test_an_order_over_the_limit_is_refused_naming_the_limit_and_the_open_amount(erp: Erp) -> None:
    person_id, workarea_id = await erp.person(), await erp.workarea()
    customer_id = await erp.customer(person_id, workarea_id, "100.00")
    first = await erp.order(customer_id, "60.00")

    detail = await erp.refused("PlaceOrder", order_body(lines(("X", 1, "40.01")), customer_id))
    assert "spending limit of 100.00" in detail and "open amount of 60.00" in detail, detail
    # Exactly up to the limit is fine.
    second = await erp.order(customer_id, "40.00")
    assert (await erp.customer_view(customer_id))["OpenAmount"] == Decimal("100.00")
    detail = await erp.refused("PlaceOrder", order_body(lines(("X", 1, "0.01")), customer_id))
    assert "spending limit of 100.00" in detail and "open amount of 100.00" in detail, detail
    # An order of nothing still fits.
    await erp.order(customer_id, "0.00")
    # Orders without a customer are not limited.
    await erp.order(None, "100000.00")

    # Cancelling frees the amount.
    await erp.ok("CancelOrder", {"OrderId": first, "Reason": "x"})
    assert (await erp.customer_view(customer_id))["OpenAmount"] == Decimal("40.00")
    third = await erp.order(customer_id, "60.00")
    await erp.refused("PlaceOrder", order_body(lines(("X", 1, "0.01")), customer_id))

    # Paying frees it too (invoicing alone does not).
    invoice_id = await erp.invoice(second)
    await erp.refused("PlaceOrder", order_body(lines(("X", 1, "0.01")), customer_id))
    await erp.ok("PayInvoice", {"InvoiceId": invoice_id})
    assert (await erp.customer_view(customer_id))["OpenAmount"] == Decimal("60.00")
    await erp.order(customer_id, "40.00")
    detail = await erp.refused("PlaceOrder", order_body(lines(("X", 1, "0.01")), customer_id))
    assert "open amount of 100.00" in detail

    # Delivering does not free anything.
    await erp.deliver(third, workarea_id)
    assert (await erp.customer_view(customer_id))["OpenAmount"] == Decimal("100.00")


async def test_changing_the_spending_limit_applies_to_the_next_order(erp: Erp) -> None:
    person_id, workarea_id = await erp.person(), await erp.workarea()
    customer_id = await erp.customer(person_id, workarea_id, "100.00")
    await erp.order(customer_id, "80.00")
    # A limit below what is already open is allowed, but nothing more fits.
    await erp.ok("ChangeSpendingLimit", {"CustomerId": customer_id, "SpendingLimit": "50.00"})
    detail = await erp.refused("PlaceOrder", order_body(lines(("X", 1, "1.00")), customer_id))
    assert "spending limit of 50.00" in detail and "open amount of 80.00" in detail, detail
    await erp.ok("ChangeSpendingLimit", {"CustomerId": customer_id, "SpendingLimit": "81.00"})
    await erp.order(customer_id, "1.00")
    view = await erp.customer_view(customer_id)
    assert (view["SpendingLimit"], view["OpenAmount"]) == ("81.00", Decimal("81.00"))


async def test_a_limit_below_the_open_amount_blocks_new_orders_until_payments_bring_it_within(
    erp: Erp,
) -> None:
    """A credit manager cuts the limit of a customer in trouble below what it has open (SAP's credit
    management allows it, and blocks): GetCustomer shows it over its limit, its new orders are refused,
    and what it ordered goes on, paid and cancelled, until the open amount is within the limit."""
    person_id, workarea_id = await erp.person("Troubled Tom"), await erp.workarea()
    customer_id = await erp.customer(person_id, workarea_id, "100.00")
    first, second = await erp.order(customer_id, "50.00"), await erp.order(customer_id, "30.00")
    invoice_id = await erp.invoice(first)

    await erp.ok("ChangeSpendingLimit", {"CustomerId": customer_id, "SpendingLimit": "50.00"})
    [view] = await erp.items("GetCustomer", CustomerId=customer_id)
    assert (view["SpendingLimit"], view["OpenAmount"]) == ("50.00", "80.00")
    assert (view["AvailableCredit"], view["OverLimit"]) == ("0.00", True)
    for amount in ("1.00", "0.00"):
        detail = await erp.refused("PlaceOrder", order_body(lines(("X", 1, amount)), customer_id))
        assert "spending limit of 50.00" in detail and "open amount of 80.00" in detail, detail
        assert "over its limit" in detail, detail

    # What it ordered goes on: delivered, paid.
    await erp.deliver(second, workarea_id)
    await erp.ok("PayInvoice", {"InvoiceId": invoice_id})
    [view] = await erp.items("GetCustomer", CustomerId=customer_id)
    assert (view["OpenAmount"], view["AvailableCredit"], view["OverLimit"]) == ("30.00", "20.00", False)
    assert open_amounts(await erp.items("GetCustomers")) == [
        customer_item(customer_id, person_id, "Troubled Tom", workarea_id, "50.00", "30.00")
    ]

    # Within the limit again: what is available fits, and not a cent more.
    third = await erp.order(customer_id, "20.00")
    await erp.refused("PlaceOrder", order_body(lines(("X", 1, "0.01")), customer_id))
    [view] = await erp.items("GetCustomer", CustomerId=customer_id)
    assert (view["OpenAmount"], view["AvailableCredit"], view["OverLimit"]) == ("50.00", "0.00", False)
    await erp.ok("CancelOrder", {"OrderId": third, "Reason": "x"})
    assert (await erp.customer_view(customer_id))["AvailableCredit"] == "20.00"


@pytest.mark.parametrize(
    ("limit", "amount", "fits"),
    [
        pytest.param("100.00", "60.00", 1, id="one of ten fits"),
        pytest.param("100.00", "30.00", 3, id="three fit"),
    ],
)
async def test_concurrent_orders_never_pass_the_limit_together(
    erp: Erp, limit: str, amount: str, fits: int
) -> None:
    person_id, workarea_id = await erp.person("Racing Rita"), await erp.workarea()
    customer_id = await erp.customer(person_id, workarea_id, limit)
    bodies = [order_body(lines(("R", 1, amount)), customer_id, "Racing Rita") for _ in range(10)]

    responses = await asyncio.gather(*(erp.post("PlaceOrder", body) for body in bodies))

    codes = [r.status_code for r in responses]
    assert sorted(codes) == [200] * fits + [422] * (10 - fits), [r.text for r in responses]
    open_at_refusal = Decimal(amount) * fits
    for response in responses:
        if response.status_code == 422:
            detail = assert_problem(response, 422)["detail"]
            assert f"spending limit of {limit}" in detail, detail
            assert f"open amount of {open_at_refusal:.2f}" in detail, detail
        else:
            erp.saw(response.json())
    accepted = sorted(b["OrderId"] for b, r in zip(bodies, responses, strict=True) if r.status_code == 200)

    view = await erp.customer_view(customer_id)
    assert view["OpenAmount"] == open_at_refusal <= Decimal(limit)
    orders = await erp.items("GetOrders", CustomerName="Racing Rita")
    assert sorted(o["OrderId"] for o in orders) == accepted

    # The store agrees: one OrderPlaced and one AmountReserved per accepted order, and nothing else.
    rows = await erp.pool.fetch(
        "SELECT stream_id, stream_revision, payload_item_name, payload->>'OrderId' AS order_id, "
        "payload->>'Amount' AS amount FROM events WHERE account_id = $1 "
        "AND payload_item_name IN ('OrderPlaced', 'AmountReserved') ORDER BY stream_id, stream_revision",
        erp.account_id,
    )
    placed = sorted(r["order_id"] for r in rows if r["payload_item_name"] == "OrderPlaced")
    reserved = [r for r in rows if r["payload_item_name"] == "AmountReserved"]
    assert placed == accepted
    assert sorted(r["order_id"] for r in reserved) == accepted
    assert {r["stream_id"] for r in reserved} == {f"Customer-{customer_id}"}
    assert [r["stream_revision"] for r in reserved] == list(range(2, 2 + fits))
    assert sum(Decimal(r["amount"]) for r in reserved) <= Decimal(limit)
    assert await erp.events() == 3 + 2 * fits  # person, workarea, customer, and these


# =============================================================================================
# Renames and addresses show up everywhere


@pytest.mark.parametrize("kind", ["Person", "Organisation"])
async def test_a_rename_and_a_new_address_show_up_in_every_read_model(erp: Erp, kind: str) -> None:
    workarea_id = await erp.workarea()
    party_id = await (erp.person("Old Name") if kind == "Person" else erp.organisation("Old Name"))
    customer_id = await erp.customer(party_id, workarea_id, "1000.00")
    delivered = await erp.order(customer_id, "10.00", "Old Name")
    invoiced = await erp.order(customer_id, "20.00", "Old Name")
    delivery_id = await erp.deliver(delivered, workarea_id)
    invoice_id = await erp.invoice(invoiced)
    # Read once under the old name, so the read models have the rows before the rename.
    assert [o["CustomerName"] for o in await erp.items("GetOrders", CustomerName="Old Name")] == [
        "Old Name"
    ] * 2

    key = "PersonId" if kind == "Person" else "OrganisationId"
    await erp.ok(f"Rename{kind}", {key: party_id, "Name": "New Name"})
    await erp.ok("ChangeAddress", {"PartyId": party_id, "Address": OFFICE})

    expected = customer_item(customer_id, party_id, "New Name", workarea_id, "1000.00", "30.00")
    assert open_amounts(await erp.items("GetCustomers")) == [expected]
    assert open_amounts(await erp.items("GetCustomers", WorkareaId=workarea_id)) == [expected]
    assert await erp.customer_view(customer_id) == {**expected, "Addresses": [OFFICE]}
    orders = await erp.items("GetOrders", CustomerName="New Name")
    assert [(o["OrderId"], o["CustomerName"]) for o in orders] == [
        (delivered, "New Name"),
        (invoiced, "New Name"),
    ]
    assert await erp.items("GetOrders", CustomerName="Old Name") == []
    invoices = await erp.items("GetOpenInvoices")
    assert [(i["InvoiceId"], i["CustomerName"]) for i in invoices] == [(invoice_id, "New Name")]
    deliveries = await erp.items("GetDeliveries", WorkareaId=workarea_id)
    assert [(d["DeliveryId"], d["CustomerName"]) for d in deliveries] == [(delivery_id, "New Name")]

    # And a later order shows it too.
    later = await erp.order(customer_id, "1.00", "Typed By Hand")
    orders = await erp.items("GetOrders", CustomerName="New Name")
    assert [o["OrderId"] for o in orders] == [delivered, invoiced, later]


# =============================================================================================
# Customisation per account


async def test_defining_a_custom_attribute(http: httpx.AsyncClient, tenant: Tenant) -> None:
    async def define(body: Any) -> httpx.Response:
        return await http.post("/customisations", json=body, headers=tenant.headers)

    loyalty = {"Element": "Customer", "Attribute": "LoyaltyNumber", "Type": "string"}
    created = await define(loyalty)
    assert created.status_code == 201, created.text
    assert created.json() == loyalty
    assert "LoyaltyNumber" in assert_problem(await define(loyalty), 409)["detail"]
    assert "LoyaltyNumber" in assert_problem(await define({**loyalty, "Type": "integer"}), 409)["detail"]

    refusals: list[tuple[Json, str]] = [
        ({**loyalty, "Element": "Spaceship"}, "Spaceship"),
        ({**loyalty, "Element": "customer"}, "customer"),
        ({**loyalty, "Attribute": "SpendingLimit"}, "SpendingLimit"),
        ({**loyalty, "Attribute": "OpenAmount"}, "OpenAmount"),
        ({**loyalty, "Element": "Order", "Attribute": "CustomerName"}, "CustomerName"),
        ({**loyalty, "Attribute": "loyaltyNumber"}, "Attribute"),
        ({**loyalty, "Attribute": "Loyalty-Number"}, "Attribute"),
        ({**loyalty, "Attribute": ""}, "Attribute"),
        ({**loyalty, "Attribute": "L" * 64}, "Attribute"),
        ({**loyalty, "Attribute": 7}, "Attribute"),
        ({**loyalty, "Attribute": "Tier", "Type": "float"}, "Type"),
        ({**loyalty, "Attribute": "Tier", "Type": None}, "Type"),
        ({"Element": "Customer", "Attribute": "Tier"}, "Type"),
        ({**loyalty, "Attribute": "Tier", "Colour": "red"}, "Colour"),
        ({**loyalty, "Attribute": "Tier", "MaxLength": 0}, "MaxLength"),
        ({**loyalty, "Attribute": "Tier", "Required": "yes"}, "Required"),
    ]
    for body, field in refusals:
        detail = assert_problem(await define(body), 422)["detail"]
        assert field in detail, (body, detail)

    listed = await http.get("/customisations", headers=tenant.headers)
    assert listed.status_code == 200, listed.text
    assert listed.json() == [loyalty]


async def test_a_custom_attribute_is_validated_stored_and_returned(erp: Erp) -> None:
    person_id, workarea_id = await erp.person("Ada Lovelace"), await erp.workarea()
    base = {"PartyId": person_id, "WorkareaId": workarea_id, "SpendingLimit": "100.00"}

    # Not defined yet: refused (and the account's definitions are now cached by the API).
    detail = await erp.refused(
        "MakeCustomer", {**base, "CustomerId": new_id(), "Custom": {"LoyaltyNumber": "L-1"}}
    )
    assert "Custom.LoyaltyNumber" in detail

    defined = await erp.http.post(
        "/customisations",
        json={"Element": "Customer", "Attribute": "LoyaltyNumber", "Type": "string"},
        headers=erp.tenant.headers,
    )
    assert defined.status_code == 201, defined.text

    # Usable at once, no restart.
    customer_id = new_id()
    await erp.ok("MakeCustomer", {**base, "CustomerId": customer_id, "Custom": {"LoyaltyNumber": "L-17"}})
    assert await stream_events(erp.pool, erp.account_id, f"Customer-{customer_id}") == [
        ("CustomerMade", {**base, "CustomerId": customer_id, "Custom": {"LoyaltyNumber": "L-17"}})
    ]
    expected = customer_item(
        customer_id, person_id, "Ada Lovelace", workarea_id, Custom={"LoyaltyNumber": "L-17"}
    )
    assert await erp.customer_view(customer_id) == {**expected, "Addresses": []}
    assert open_amounts(await erp.items("GetCustomers")) == [expected]

    # Optional: a customer without it has no Custom.
    plain = await erp.customer(person_id, workarea_id)
    assert "Custom" not in await erp.customer_view(plain)

    for wrong in (17, True, ["L-17"], {"Number": "L-17"}, "L" * 201):
        detail = await erp.refused(
            "MakeCustomer", {**base, "CustomerId": new_id(), "Custom": {"LoyaltyNumber": wrong}}
        )
        assert "Custom.LoyaltyNumber" in detail, (wrong, detail)
    detail = await erp.refused("MakeCustomer", {**base, "CustomerId": new_id(), "Custom": {"Tier": "gold"}})
    assert "Custom.Tier" in detail
    # On another element it does not exist.
    detail = await erp.refused("PlaceOrder", {**order_body(), "Custom": {"LoyaltyNumber": "L-17"}})
    assert "Custom.LoyaltyNumber" in detail

    # A later command on the customer changes it, validated the same way.
    await erp.ok(
        "ChangeSpendingLimit",
        {"CustomerId": customer_id, "SpendingLimit": "90.00", "Custom": {"LoyaltyNumber": "L-18"}},
    )
    detail = await erp.refused(
        "ChangeSpendingLimit",
        {"CustomerId": customer_id, "SpendingLimit": "90.00", "Custom": {"LoyaltyNumber": 18}},
    )
    assert "Custom.LoyaltyNumber" in detail
    view = await erp.customer_view(customer_id)
    assert (view["SpendingLimit"], view["Custom"]) == ("90.00", {"LoyaltyNumber": "L-18"})


async def test_custom_attributes_belong_to_their_account(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    a = Erp(http, await onboard(http, "Customiser A"), pool)
    b = Erp(http, await onboard(http, "Customiser B"), pool)
    defined = await http.post(
        "/customisations",
        json={"Element": "Customer", "Attribute": "LoyaltyNumber", "Type": "string"},
        headers=a.tenant.headers,
    )
    assert defined.status_code == 201, defined.text
    a_customer = await a.customer(await a.person(), await a.workarea(), Custom={"LoyaltyNumber": "L-17"})

    listed = await http.get("/customisations", headers=b.tenant.headers)
    assert listed.status_code == 200, listed.text
    assert listed.json() == []
    b_person, b_workarea = await b.person(), await b.workarea()
    b_body = {"CustomerId": new_id(), "PartyId": b_person, "WorkareaId": b_workarea, "SpendingLimit": "1.00"}
    detail = await b.refused("MakeCustomer", {**b_body, "Custom": {"LoyaltyNumber": "L-17"}})
    assert "Custom.LoyaltyNumber" in detail
    await b.absent("GetCustomer", CustomerId=a_customer)

    # B may define the same name its own way; each account keeps its own definition.
    own = await http.post(
        "/customisations",
        json={"Element": "Customer", "Attribute": "LoyaltyNumber", "Type": "integer"},
        headers=b.tenant.headers,
    )
    assert own.status_code == 201, own.text
    await b.ok("MakeCustomer", {**b_body, "Custom": {"LoyaltyNumber": 17}})
    assert (await b.customer_view(b_body["CustomerId"]))["Custom"] == {"LoyaltyNumber": 17}
    await a.refused(
        "MakeCustomer",
        {"CustomerId": new_id(), "PartyId": b_person, "WorkareaId": b_workarea, "SpendingLimit": "1.00"},
    )
    a_person, a_workarea = await a.person(), await a.workarea()
    a_body = {"CustomerId": new_id(), "PartyId": a_person, "WorkareaId": a_workarea, "SpendingLimit": "1.00"}
    assert "Custom.LoyaltyNumber" in await a.refused(
        "MakeCustomer", {**a_body, "Custom": {"LoyaltyNumber": 17}}
    )
    a_listed = await http.get("/customisations", headers=a.tenant.headers)
    assert a_listed.json() == [{"Element": "Customer", "Attribute": "LoyaltyNumber", "Type": "string"}]


async def test_custom_attribute_types_and_required_attributes(erp: Erp) -> None:
    definitions = [
        {"Element": "Person", "Attribute": "Code", "Type": "string", "MaxLength": 5},
        {"Element": "Person", "Attribute": "Age", "Type": "integer"},
        {"Element": "Person", "Attribute": "Credit", "Type": "money"},
        {"Element": "Person", "Attribute": "Vip", "Type": "boolean"},
        {"Element": "Person", "Attribute": "Birthday", "Type": "date"},
        {"Element": "Workarea", "Attribute": "CostCentre", "Type": "string", "Required": True},
    ]
    for definition in definitions:
        response = await erp.http.post("/customisations", json=definition, headers=erp.tenant.headers)
        assert response.status_code == 201, response.text
        assert response.json() == definition

    good = {"Code": "AB-12", "Age": 36, "Credit": "12.50", "Vip": True, "Birthday": "1815-12-10"}
    person_id = new_id()
    await erp.ok("RegisterPerson", {"PersonId": person_id, "Name": "Ada", "Custom": good})
    assert (await stream_events(erp.pool, erp.account_id, f"Person-{person_id}"))[0][1]["Custom"] == good

    wrong: list[tuple[str, Any]] = [
        ("Code", "ABCDEF"),
        ("Code", 12),
        ("Age", "36"),
        ("Age", 36.5),
        ("Age", True),
        ("Credit", "12.505"),
        ("Credit", "-1.00"),
        ("Credit", "lots"),
        ("Credit", "1_000"),
        ("Credit", " 1 "),
        ("Credit", "\uff11\uff12"),
        ("Credit", 12),
        ("Credit", 12.5),
        ("Credit", "1E+3"),
        ("Credit", "-0"),
        ("Credit", "1000000000000.01"),
        ("Vip", "true"),
        ("Vip", 1),
        ("Birthday", "1815-13-10"),
        ("Birthday", 18151210),
        ("Birthday", "18151210"),
        ("Birthday", "1815-W49-7"),
        ("Birthday", "1815-344"),
        ("Birthday", "1815-12-10T00:00:00"),
    ]
    for name, value in wrong:
        detail = await erp.refused(
            "RegisterPerson", {"PersonId": new_id(), "Name": "Ada", "Custom": {**good, name: value}}
        )
        assert f"Custom.{name}" in detail, (name, value, detail)

    # Required: a new Workarea must have it; later commands need not repeat it.
    detail = await erp.refused("CreateWorkarea", {"WorkareaId": new_id(), "Name": "North"})
    assert "Custom.CostCentre" in detail
    detail = await erp.refused(
        "CreateWorkarea", {"WorkareaId": new_id(), "Name": "N", "Custom": {"CostCentre": None}}
    )
    assert "Custom.CostCentre" in detail
    await erp.ok(
        "CreateWorkarea", {"WorkareaId": new_id(), "Name": "North", "Custom": {"CostCentre": "CC-1"}}
    )


@pytest.mark.parametrize(
    ("element", "attribute", "accepted"),
    [
        pytest.param("Organisation", "VatNumber", True, id="the organisation's own attribute"),
        pytest.param("Person", "Nickname", False, id="a person's attribute on an organisation"),
    ],
)
async def test_change_address_checks_custom_attributes_of_the_party_it_changes(
    erp: Erp, element: str, attribute: str, accepted: bool
) -> None:
    """ChangeAddress addresses a Person or an Organisation: Custom is validated for the one it names."""
    response = await erp.http.post(
        "/customisations",
        json={"Element": element, "Attribute": attribute, "Type": "string"},
        headers=erp.tenant.headers,
    )
    assert response.status_code == 201, response.text
    organisation_id = await erp.organisation()
    body = {"PartyId": organisation_id, "Address": OFFICE, "Custom": {attribute: "x"}}
    if accepted:
        await erp.ok("ChangeAddress", body)
        events = await stream_events(erp.pool, erp.account_id, f"Organisation-{organisation_id}")
        assert events[-1] == (
            "AddressChanged",
            {"PartyId": organisation_id, "Address": OFFICE, "Custom": {attribute: "x"}},
        )
    else:
        assert f"Custom.{attribute}" in await erp.refused("ChangeAddress", body)


async def test_custom_attributes_on_orders_are_returned_by_get_orders(erp: Erp) -> None:
    response = await erp.http.post(
        "/customisations",
        json={"Element": "Order", "Attribute": "Channel", "Type": "string"},
        headers=erp.tenant.headers,
    )
    assert response.status_code == 201, response.text
    body = {**order_body(name="Custom Carla"), "Custom": {"Channel": "web"}}
    await erp.ok("PlaceOrder", body)
    plain = await erp.order(None, "1.00", "Custom Carla")
    items = await erp.items("GetOrders", CustomerName="Custom Carla")
    assert [(i["OrderId"], i.get("Custom")) for i in items] == [
        (body["OrderId"], {"Channel": "web"}),
        (plain, None),
    ]


# =============================================================================================
# Bad input per command: 422 naming the field, nothing stored

A, B, C = (str(uuid.UUID(int=n)) for n in (1, 2, 3))
_MISSING = object()

VALID: dict[str, Json] = {
    "RegisterPerson": {"PersonId": A, "Name": "Ada", "Email": "ada@example.com"},
    "RenamePerson": {"PersonId": A, "Name": "Ada"},
    "RegisterOrganisation": {"OrganisationId": A, "Name": "Engines Ltd"},
    "RenameOrganisation": {"OrganisationId": A, "Name": "Engines Ltd"},
    "ChangeAddress": {"PartyId": A, "Address": OFFICE},
    "SetUpOwnOrganisation": {"OwnOrganisationId": A, "Name": "Us"},
    "CreateWorkarea": {"WorkareaId": A, "Name": "North"},
    "MakeCustomer": {"CustomerId": A, "PartyId": B, "WorkareaId": C, "SpendingLimit": "100.00"},
    "ChangeSpendingLimit": {"CustomerId": A, "SpendingLimit": "100.00"},
    "PlaceOrder": {
        "OrderId": A,
        "CustomerName": "Ada",
        "OrderLines": [{"ProductCode": "KB-1", "Quantity": 1, "UnitPrice": "1.00"}],
        "CustomerId": B,
    },
    "CancelOrder": {"OrderId": A, "Reason": "changed my mind"},
    "DeliverOrder": {"DeliveryId": A, "OrderId": B, "WorkareaId": C},
    "InvoiceOrder": {"InvoiceId": A, "OrderId": B},
    "PayInvoice": {"InvoiceId": A},
}
KEYS = {name: next(iter(body)) for name, body in VALID.items()}


def changed(body: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """A deep copy of `body` with the value at `path` replaced (or removed, for _MISSING)."""
    copy = json.loads(json.dumps(body))
    target = copy
    for step in path[:-1]:
        target = target[step]
    if value is _MISSING:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return copy


def case(command: str, path: tuple[str | int, ...], value: Any, field: str, why: str) -> Any:
    return pytest.param(command, changed(VALID[command], path, value), field, id=f"{command}: {why}")


BAD_INPUT: list[Any] = [
    # Every command: its key missing or not an id, an unknown attribute, Custom not an object or
    # naming an attribute the account does not have, a negative ExpectedRevision.
    *(case(c, (KEYS[c],), _MISSING, KEYS[c], f"missing {KEYS[c]}") for c in VALID),
    *(case(c, (KEYS[c],), 12345, KEYS[c], f"{KEYS[c]} a number") for c in VALID),
    *(case(c, (KEYS[c],), "not-a-uuid", KEYS[c], f"{KEYS[c]} not a uuid") for c in VALID),
    *(case(c, ("Colour",), "red", "Colour", "unknown attribute") for c in VALID),
    *(case(c, ("Custom",), "gold", "Custom", "Custom not an object") for c in VALID),
    *(case(c, ("Custom",), {"Tier": "gold"}, "Custom.Tier", "undefined custom attribute") for c in VALID),
    *(case(c, ("ExpectedRevision",), -1, "ExpectedRevision", "negative ExpectedRevision") for c in VALID),
    # Names, emails, reasons.
    case("RegisterPerson", ("Name",), 42, "Name", "Name a number"),
    case("RegisterPerson", ("Name",), "", "Name", "empty Name"),
    case("RegisterPerson", ("Name",), "x" * 201, "Name", "Name too long"),
    case("RegisterPerson", ("Email",), ["ada@example.com"], "Email", "Email a list"),
    case("RenamePerson", ("Name",), _MISSING, "Name", "missing Name"),
    case("RenamePerson", ("Name",), None, "Name", "Name null"),
    case("RegisterOrganisation", ("Name",), {"Legal": "x"}, "Name", "Name an object"),
    case("RenameOrganisation", ("Name",), True, "Name", "Name a boolean"),
    case("SetUpOwnOrganisation", ("Name",), 1.5, "Name", "Name a number"),
    case("CreateWorkarea", ("Name",), _MISSING, "Name", "missing Name"),
    case("CancelOrder", ("Reason",), 5, "Reason", "Reason a number"),
    case("CancelOrder", ("Reason",), "", "Reason", "empty Reason"),
    case("CancelOrder", ("Reason",), "x" * 1001, "Reason", "Reason too long"),
    # Addresses.
    case("ChangeAddress", ("Address",), _MISSING, "Address", "missing Address"),
    case("ChangeAddress", ("Address",), "1 Engine Yard, Leeds", "Address", "Address a string"),
    case("ChangeAddress", ("Address",), [OFFICE], "Address", "Address a list"),
    case("ChangeAddress", ("Address", "Country"), "GBR", "Country", "Country too long"),
    case("ChangeAddress", ("Address", "City"), _MISSING, "City", "missing City"),
    case("ChangeAddress", ("Address", "PostalCode"), 12345, "PostalCode", "PostalCode a number"),
    case("ChangeAddress", ("Address", "Planet"), "Mars", "Planet", "unknown address attribute"),
    # Money.
    case("MakeCustomer", ("SpendingLimit",), "12.345", "SpendingLimit", "three decimals"),
    case("MakeCustomer", ("SpendingLimit",), 12.345, "SpendingLimit", "three decimals as a number"),
    case("MakeCustomer", ("SpendingLimit",), "-0.01", "SpendingLimit", "negative"),
    case("MakeCustomer", ("SpendingLimit",), "abc", "SpendingLimit", "not a number"),
    case("MakeCustomer", ("SpendingLimit",), "NaN", "SpendingLimit", "NaN"),
    case("MakeCustomer", ("SpendingLimit",), "1000000000000.01", "SpendingLimit", "over the maximum"),
    case("MakeCustomer", ("SpendingLimit",), True, "SpendingLimit", "a boolean"),
    case("MakeCustomer", ("SpendingLimit",), _MISSING, "SpendingLimit", "missing"),
    case("MakeCustomer", ("PartyId",), "nope", "PartyId", "PartyId not a uuid"),
    case("MakeCustomer", ("WorkareaId",), 7, "WorkareaId", "WorkareaId a number"),
    case("MakeCustomer", ("OwnOrganisationId",), "nope", "OwnOrganisationId", "OwnOrganisationId not a uuid"),
    case("MakeCustomer", ("OpenAmount",), "0.00", "OpenAmount", "OpenAmount is not the client's"),
    case("MakeCustomer", ("Status",), "Blocked", "Status", "Status is not the client's"),
    case("ChangeSpendingLimit", ("SpendingLimit",), "0.001", "SpendingLimit", "three decimals"),
    case("ChangeSpendingLimit", ("SpendingLimit",), "-1", "SpendingLimit", "negative"),
    case("ChangeSpendingLimit", ("SpendingLimit",), None, "SpendingLimit", "null"),
    # Money is one strict grammar: ASCII digits, at most 2 decimals, no sign, exponent, underscore,
    # space or JSON number.
    *(
        case(command, path, value, path[-1], f"{path[-1]} {why}")
        for command, path in (
            ("MakeCustomer", ("SpendingLimit",)),
            ("ChangeSpendingLimit", ("SpendingLimit",)),
            ("PlaceOrder", ("OrderLines", 0, "UnitPrice")),
        )
        for value, why in (
            ("1_000", "with an underscore"),
            (" 1 ", "with spaces"),
            ("10\n", "with a newline"),
            ("\uff11\uff12", "in full-width digits"),
            ("\u0661\u0662", "in Arabic-Indic digits"),
            ("1E+3", "with an exponent"),
            ("9.99E+11", "with an exponent and decimals"),
            ("-0", "minus zero"),
            ("+1", "with a plus"),
            ("1.", "ending in a point"),
            (".5", "starting with a point"),
            (1000, "a JSON integer"),
            (12.5, "a JSON number"),
        )
    ),
    # Order lines.
    case("PlaceOrder", ("OrderLines", 0, "Quantity"), -1, "Quantity", "negative Quantity"),
    case("PlaceOrder", ("OrderLines", 0, "Quantity"), 0, "Quantity", "zero Quantity"),
    case("PlaceOrder", ("OrderLines", 0, "Quantity"), 1_000_001, "Quantity", "Quantity over the maximum"),
    case("PlaceOrder", ("OrderLines", 0, "Quantity"), "2", "Quantity", "Quantity a string"),
    case("PlaceOrder", ("OrderLines", 0, "Quantity"), 1.5, "Quantity", "fractional Quantity"),
    case("PlaceOrder", ("OrderLines", 0, "UnitPrice"), "1.001", "UnitPrice", "UnitPrice three decimals"),
    case("PlaceOrder", ("OrderLines", 0, "UnitPrice"), "-1.00", "UnitPrice", "negative UnitPrice"),
    case("PlaceOrder", ("OrderLines", 0, "UnitPrice"), "Infinity", "UnitPrice", "infinite UnitPrice"),
    case("PlaceOrder", ("OrderLines", 0, "ProductCode"), 5, "ProductCode", "ProductCode a number"),
    case("PlaceOrder", ("OrderLines", 0, "Discount"), "5.00", "Discount", "unknown line attribute"),
    case("PlaceOrder", ("OrderLines",), [], "OrderLines", "no lines"),
    case("PlaceOrder", ("CustomerId",), "nope", "CustomerId", "CustomerId not a uuid"),
    case("PlaceOrder", ("CustomerName",), 7, "CustomerName", "CustomerName a number"),
    case("PlaceOrder", ("Total",), "1.00", "Total", "Total is not the client's"),
    case("DeliverOrder", ("WorkareaId",), "nope", "WorkareaId", "WorkareaId not a uuid"),
    case("DeliverOrder", ("OrderId",), _MISSING, "OrderId", "missing OrderId"),
    case("InvoiceOrder", ("OrderId",), 5, "OrderId", "OrderId a number"),
    case("InvoiceOrder", ("Amount",), "10.00", "Amount", "Amount is not the client's"),
    case("PayInvoice", ("Amount",), "10.00", "Amount", "Amount is not the client's"),
]


@pytest.fixture(scope="module")
async def idle_tenant(api: str) -> Tenant:
    """An account no command should ever store anything for."""
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        return await onboard(client, "Bad input")


@pytest.mark.parametrize(("command", "body", "field"), BAD_INPUT)
async def test_bad_input_is_422_naming_the_field_and_stores_nothing(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool[Any],
    idle_tenant: Tenant,
    command: str,
    body: Json,
    field: str,
) -> None:
    response = await http.post(f"/commands/{command}", json=body, headers=idle_tenant.headers)
    detail = assert_problem(response, 422)["detail"]
    assert field in detail, detail
    assert await event_count(pool, idle_tenant.account_id) == 0


# =============================================================================================
# An order total money cannot hold, on a stack of its own: if it were accepted, the read model
# that cannot store it would stall every account's orders, so it must not meet the other tests.


@pytest.fixture(scope="module")
async def own_stack() -> AsyncIterator[tuple[str, asyncpg.Pool[Any]]]:
    async with private_stack("model") as (api, url):
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        try:
            yield api, pool
        finally:
            await pool.close()


async def test_an_order_total_beyond_what_money_holds_is_refused(
    own_stack: tuple[str, asyncpg.Pool[Any]],
) -> None:
    """Each line is in range (Quantity <= 1,000,000, UnitPrice <= 10^12), but the total is 10^18."""
    api, pool = own_stack
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        erp = Erp(client, await onboard(client, "Huge"), pool)
        body = order_body(lines(("BIG", 1_000_000, "1000000000000.00")), name="Huge Hugo")
        detail = await erp.refused("PlaceOrder", body)
        assert "Total" in detail or "OrderLines" in detail, detail
        # The read model keeps up with a valid order.
        fine = await erp.order(None, "1.00", "Huge Hugo")
        assert [o["OrderId"] for o in await erp.items("GetOrders", CustomerName="Huge Hugo")] == [fine]


# =============================================================================================
# Paging


async def test_list_queries_come_a_page_at_a_time(erp: Erp) -> None:
    """Limit items per page; Next leads to the following page until the last, which has none."""
    name = f"Paging Pam {new_id()}"
    placed = [await erp.order(None, "1.00", name) for _ in range(5)]
    assert [o["OrderId"] for o in await erp.items("GetOrders", CustomerName=name)] == placed
    pages = await erp.pages("GetOrders", 2, CustomerName=name)
    assert [[o["OrderId"] for o in page] for page in pages] == [placed[0:2], placed[2:4], placed[4:]]
    assert [[o["OrderId"] for o in page] for page in await erp.pages("GetOrders", 5, CustomerName=name)] == [
        placed
    ]

    # An order placed after a page was read shows up on a later page, none is repeated.
    first = await erp.pages("GetOrders", 3, CustomerName=name)
    late = await erp.order(None, "1.00", name)
    again = await erp.pages("GetOrders", 3, CustomerName=name)
    assert [o["OrderId"] for page in first for o in page] == placed
    assert [o["OrderId"] for page in again for o in page] == [*placed, late]

    workarea_id = await erp.workarea()
    parties = [await erp.person(f"Pager {n} {new_id()}") for n in range(3)]
    customers = [await erp.customer(party, workarea_id, "10.00") for party in parties]
    by_name = [c["CustomerId"] for c in await erp.items("GetCustomers", WorkareaId=workarea_id)]
    assert sorted(by_name) == sorted(customers)
    pages = await erp.pages("GetCustomers", 2, WorkareaId=workarea_id)
    assert [len(p) for p in pages] == [2, 1]
    assert [c["CustomerId"] for page in pages for c in page] == by_name

    for order_id in placed[:3]:
        await erp.deliver(order_id, workarea_id)
        await erp.invoice(order_id)
    deliveries = await erp.pages("GetDeliveries", 2, WorkareaId=workarea_id)
    assert [[d["OrderId"] for d in page] for page in deliveries] == [placed[0:2], placed[2:3]]
    invoices = [i["OrderId"] for page in await erp.pages("GetOpenInvoices", 1) for i in page]
    assert invoices[-3:] == placed[:3]
