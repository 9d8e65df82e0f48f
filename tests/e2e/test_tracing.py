"""One command's trace, end to end: HTTP, command, append, and the projector batch and notification
that link back to it, plus Temporal's workflow and activity spans (in-memory exporter)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import Tenant

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def in_trace(spans: tuple[ReadableSpan, ...], trace_id: int) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans if s.context is not None and s.context.trace_id == trace_id}


def linking(spans: tuple[ReadableSpan, ...], name: str, trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name and any(link.context.trace_id == trace_id for link in s.links)]


async def test_a_commands_trace_shows_every_step(
    http: httpx.AsyncClient, tenant: Tenant, tracing: InMemorySpanExporter
) -> None:
    order_id = str(uuid.uuid4())
    headers = {**tenant.headers, "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
    placed = await http.post(
        "/commands/PlaceOrder",
        headers=headers,
        json={
            "OrderId": order_id,
            "CustomerName": "Traced",
            "OrderLines": [{"ProductCode": "P", "Quantity": 1, "UnitPrice": "1.00"}],
        },
    )
    assert placed.status_code == 200, placed.text
    read = await http.get(
        "/queries/GetOrders",
        params={"CustomerName": "Traced", "ConsistentWith": placed.json()["ConsistencyToken"]},
        headers=tenant.headers,
    )
    assert read.status_code == 200
    trace_id = int(TRACE_ID, 16)
    position = placed.json()["Positions"]["Order"]

    for _ in range(100):  # the notify span ends just after the read model commits
        spans = tracing.get_finished_spans()
        if linking(spans, "notify", trace_id):
            break
        await asyncio.sleep(0.05)
    spans = tracing.get_finished_spans()
    trace = in_trace(spans, trace_id)

    http_span = next(s for name, s in trace.items() if name.startswith("POST /commands/PlaceOrder"))
    command = trace["command PlaceOrder"]
    append = trace["append"]
    assert command.parent is not None and append.parent is not None
    assert append.parent.span_id == command.context.span_id
    ancestors = {s.context.span_id for s in trace.values() if s.context is not None}
    assert command.parent.span_id in ancestors and http_span.context is not None
    assert command.attributes is not None and append.attributes is not None
    assert command.attributes["erp.account_id"] == str(tenant.account_id)
    assert command.attributes["erp.command"] == "PlaceOrder"
    assert command.attributes["erp.stream_id"] == f"Order-{order_id}"
    assert command.attributes["erp.position.Order"] == position
    assert append.attributes["erp.position.Order"] == position
    assert f"Order-{order_id}" in append.attributes["erp.streams"]

    carried = linking(spans, "append batch", trace_id)
    assert carried, "no group-commit batch links to the command's append"
    assert any(link.context.span_id == append.context.span_id for link in carried[0].links)
    assert carried[0].context.trace_id != trace_id, "a batch serves many commands: its own trace"

    batches = linking(spans, "project orders", trace_id)
    assert batches, "no projector batch links to the command's trace"
    assert batches[0].attributes is not None and batches[0].attributes["erp.events"] >= 1
    assert linking(spans, "notify", trace_id), "no notification links to the command's trace"


async def test_onboarding_is_traced_through_temporal(
    http: httpx.AsyncClient, tenant: Tenant, tracing: InMemorySpanExporter
) -> None:
    names = {s.name for s in tracing.get_finished_spans()}
    assert any(n.startswith("StartWorkflow:OnboardAccountWorkflow") for n in names), sorted(names)[:40]
    assert any(n.startswith("RunActivity:activate_account") for n in names)  # a local activity
