"""The seed's round trip over HTTP: PlaceOrder, then GetOrders consistent with its token."""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import Tenant


async def test_place_order_then_read_it_back(http: httpx.AsyncClient, tenant: Tenant) -> None:
    order_id = str(uuid.uuid4())
    placed = await http.post(
        "/commands/PlaceOrder",
        headers=tenant.headers,
        json={
            "OrderId": order_id,
            "CustomerName": "Linus Torvalds",
            "OrderLines": [{"ProductCode": "KB-1", "Quantity": 2, "UnitPrice": "10.00"}],
        },
    )
    assert placed.status_code == 200, placed.text
    body = placed.json()
    assert body["StreamId"] == f"Order-{order_id}"
    assert body["Revision"] == 1
    assert body["Positions"] == {"Order": 1}

    orders = await http.get(
        "/queries/GetOrders",
        params={"CustomerName": "Linus Torvalds", "ConsistentWith": body["ConsistencyToken"]},
        headers=tenant.headers,
    )
    assert orders.status_code == 200, orders.text
    assert orders.json()["Items"] == [
        {
            "OrderId": order_id,
            "CustomerName": "Linus Torvalds",
            "Status": "Placed",
            "Total": "20.00",
            "OrderLines": [{"ProductCode": "KB-1", "Quantity": 2, "UnitPrice": "10.00"}],
        }
    ]
