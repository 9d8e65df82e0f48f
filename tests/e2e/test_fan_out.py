"""A rename that fans out to a customer's orders, end to end: the API, the worker's projectors and
the orders read model's fan-out as the worker runs them, and a client that reads with the rename's
ConsistencyToken. Every order it gets shows the new name: the wait covers the whole fan-out, not
only the customers read model that projected the rename. And the read model chained to the
customers one, as the worker feeds it."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import onboard
from tests.e2e.test_erp_model import Erp, order_body

pytestmark = pytest.mark.timeout(180)

ORDERS = 150
"""Within the account's burst of commands (200)."""


async def test_consistent_with_a_rename_waits_for_every_order_to_show_it(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    erp = Erp(http, await onboard(http, "Fan-out"), pool)
    organisation = await erp.organisation("Old Name Ltd")
    customer = await erp.customer(organisation, await erp.workarea(), "1000000.00")
    for _ in range(ORDERS):  # one at a time: each reserves on the customer's stream
        await erp.ok("PlaceOrder", order_body(customer_id=customer))
    pages = await erp.pages("GetOrders", 500, CustomerName="Old Name Ltd")
    assert sum(len(p) for p in pages) == ORDERS

    for round_, name in enumerate(("New Name Ltd", "Newer Name Ltd")):
        await erp.ok("RenameOrganisation", {"OrganisationId": organisation, "Name": name})
        pages = await erp.pages("GetOrders", 500, CustomerName=name)
        names = [item["CustomerName"] for page in pages for item in page]
        assert names == [name] * ORDERS, f"rename {round_}: {len(names)} orders show it"
        (customer_row,) = await erp.items("GetCustomers")
        assert customer_row["Name"] == name
    # The chained read model, fed by the customers one as the worker runs it: what the workarea's
    # customer has open, every order's 25.50.
    (workarea,) = await erp.items("GetOpenAmounts")
    assert workarea["Customers"] == 1 and workarea["OpenAmount"] == f"{ORDERS * 25.5:.2f}"
