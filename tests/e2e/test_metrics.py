"""The metrics operators read: commands by outcome and latency, events appended and projected,
projection delay, notification delay and lag (an in-memory reader stands in for OTLP)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from tests.conftest import Tenant, metric_points


async def test_commands_and_projections_are_measured(
    http: httpx.AsyncClient, tenant: Tenant, metric_reader: InMemoryMetricReader
) -> None:
    order = {
        "OrderId": str(uuid.uuid4()),
        "CustomerName": "Measured",
        "OrderLines": [{"ProductCode": "P", "Quantity": 1, "UnitPrice": "1.00"}],
    }
    placed = await http.post("/commands/PlaceOrder", json=order, headers=tenant.headers)
    refused = await http.post("/commands/PlaceOrder", json=order, headers=tenant.headers)
    assert (placed.status_code, refused.status_code) == (200, 422)
    read = await http.get(
        "/queries/GetOrders",
        params={"CustomerName": "Measured", "ConsistentWith": placed.json()["ConsistencyToken"]},
        headers=tenant.headers,
    )
    assert read.status_code == 200
    found: dict[str, list[Any]] = {}
    for _ in range(50):
        found = metric_points(metric_reader)
        if "erp.notification.delay" in found and "erp.projection.lag" in found:
            break
        await asyncio.sleep(0.1)

    outcomes = {(p.attributes["command"], p.attributes["outcome"]): p.value for p in found["erp.commands"]}
    assert outcomes[("PlaceOrder", "ok")] >= 1
    assert outcomes[("PlaceOrder", "refused")] >= 1
    durations = [p for p in found["erp.command.duration"] if p.attributes["command"] == "PlaceOrder"]
    assert durations and all(p.count >= 1 and p.sum > 0 for p in durations)
    appended = {p.attributes["stream_type"]: p.value for p in found["erp.events.appended"]}
    assert appended["Order"] >= 1
    projected = {p.attributes["projection"]: p.value for p in found["erp.events.projected"]}
    assert projected["orders"] >= 1
    assert any(p.attributes["projection"] == "orders" for p in found["erp.projection.delay"])
    assert any(p.attributes["projection"] == "orders" for p in found["erp.notification.delay"])
    assert {p.attributes["projection"] for p in found["erp.projection.lag"]} >= {"orders"}
