"""What a browser needs of the API: CORS for the configured origins, gzip for big answers (never
for the event stream), and stream tickets, since an EventSource sends no Authorization header
(single use, short-lived, any API process, never in a trace)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core.settings import Settings
from tests.conftest import Tenant, onboard, own_api

APP = "https://app.example"


async def test_a_preflight_from_an_allowed_origin_is_answered_and_another_is_not(settings: Settings) -> None:
    async with own_api(settings, cors_origins=f"{APP}, https://other.example") as client:
        preflight = await client.options(
            "/commands/PlaceOrder",
            headers={
                "Origin": APP,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
            },
        )
        assert preflight.status_code in (200, 204), preflight.text
        assert preflight.headers["access-control-allow-origin"] == APP
        allowed = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type", "idempotency-key", "last-event-id"} <= allowed
        assert "POST" in preflight.headers["access-control-allow-methods"]

        stranger = await client.options(
            "/commands/PlaceOrder",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in stranger.headers, stranger.headers

        # A simple request: the browser may read Retry-After and WWW-Authenticate of the answer.
        answer = await client.get("/notifications", headers={"Origin": APP})
        assert answer.status_code == 401
        assert answer.headers["access-control-allow-origin"] == APP
        exposed = {h.strip().lower() for h in answer.headers["access-control-expose-headers"].split(",")}
        assert {"retry-after", "www-authenticate"} <= exposed
        other = await client.get("/health/live", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


async def test_without_origins_there_are_no_cors_headers(http: httpx.AsyncClient) -> None:
    preflight = await http.options(
        "/commands/PlaceOrder", headers={"Origin": APP, "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers


async def _orders(http: httpx.AsyncClient, tenant: Tenant, count: int) -> str:
    token = ""
    for i in range(count):
        placed = await http.post(
            "/commands/PlaceOrder",
            headers=tenant.headers,
            json={
                "OrderId": str(uuid.uuid4()),
                "CustomerName": "Compressed Customer",
                "OrderLines": [{"ProductCode": f"GZ-{i:04d}", "Quantity": 1, "UnitPrice": "1.00"}],
            },
        )
        assert placed.status_code == 200, placed.text
        token = placed.json()["ConsistencyToken"]
    return token


async def test_big_answers_are_gzipped_small_ones_and_the_stream_are_not(http: httpx.AsyncClient) -> None:
    tenant = await onboard(http, "Compressed")
    token = await _orders(http, tenant, 40)
    gzip = {**tenant.headers, "Accept-Encoding": "gzip"}
    params = {"CustomerName": "Compressed Customer", "ConsistentWith": token, "Limit": 1000, "Timeout": 20}
    page = await http.get("/queries/GetOrders", params=params, headers=gzip)
    assert page.status_code == 200, page.text
    assert page.headers.get("content-encoding") == "gzip"
    assert len(page.json()["Items"]) == 40  # httpx took it apart again
    assert int(page.headers["content-length"]) < len(page.content) / 3, "gzip should shrink it"

    small = await http.get("/customisations", headers=gzip)
    assert small.status_code == 200
    assert "content-encoding" not in small.headers

    async with asyncio.timeout(30), http.stream("GET", "/notifications", headers=gzip) as stream:
        assert stream.status_code == 200
        assert "content-encoding" not in stream.headers
        assert stream.headers["content-type"].startswith("text/event-stream")


async def _first_notification(stream: httpx.Response) -> dict[str, Any]:
    async for line in stream.aiter_lines():
        if line.startswith("data:"):
            note: dict[str, Any] = json.loads(line.removeprefix("data:"))
            return note
    raise AssertionError("the stream ended")


async def test_a_ticket_opens_the_stream_once_for_its_account(
    http: httpx.AsyncClient, settings: Settings, tracing: InMemorySpanExporter
) -> None:
    tenant, other = await onboard(http, "Ticketed"), await onboard(http, "Not Ticketed")
    issued = await http.post("/notifications/tickets", headers=tenant.headers)
    assert issued.status_code == 201, issued.text
    body = issued.json()
    assert set(body) == {"Ticket", "ExpiresAt"}
    ticket = body["Ticket"]
    assert len(ticket) >= 43
    expires = datetime.fromisoformat(body["ExpiresAt"])
    assert 50 <= (expires - datetime.now(UTC)).total_seconds() <= 61

    async with asyncio.timeout(60), http.stream("GET", "/notifications", params={"Ticket": ticket}) as stream:
        assert stream.status_code == 200
        # Used once: a second stream with it is refused, in this process and in another.
        again = await http.get("/notifications", params={"Ticket": ticket})
        assert again.status_code == 401
        assert again.headers["content-type"].startswith("application/problem+json")
        assert "ticket" in again.json()["detail"]
        # The stream is the ticket's account's: its order is heard; another account's is not.
        await http.post(
            "/commands/PlaceOrder",
            headers=other.headers,
            json={
                "OrderId": str(uuid.uuid4()),
                "CustomerName": "Not heard",
                "OrderLines": [{"ProductCode": "T", "Quantity": 1, "UnitPrice": "1.00"}],
            },
        )
        await asyncio.sleep(1)
        mine = await http.post(
            "/commands/PlaceOrder",
            headers=tenant.headers,
            json={
                "OrderId": str(uuid.uuid4()),
                "CustomerName": "Heard",
                "OrderLines": [{"ProductCode": "T", "Quantity": 1, "UnitPrice": "1.00"}],
            },
        )
        note = await _first_notification(stream)
        position = mine.json()["Positions"]["Order"]
        assert note == {"Projection": "orders", "StreamType": "Order", "Position": position}

    for refused in (
        await http.get("/notifications", params={"Ticket": "not-a-ticket"}),
        await http.get("/notifications", params={"Ticket": "x" * 500}),
        await http.get("/notifications", params={"Ticket": ""}),
        await http.post("/notifications/tickets"),
    ):
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")

    # The ticket never reached a trace: the server spans of its requests show it redacted.
    spans = tracing.get_finished_spans()
    attributes = [str(value) for s in spans for value in (s.attributes or {}).values()]
    assert not [a for a in attributes if ticket in a]
    assert any("Ticket=REDACTED" in a for a in attributes), "the requests were not traced at all"


async def test_a_ticket_works_on_another_api_process_and_expires(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    tenant = await onboard(http, "Ticket Elsewhere")
    async with own_api(settings, sse_ticket_ttl=1) as elsewhere:
        ticket = (await http.post("/notifications/tickets", headers=tenant.headers)).json()["Ticket"]
        params = {"Ticket": ticket}
        async with asyncio.timeout(30), elsewhere.stream("GET", "/notifications", params=params) as opened:
            assert opened.status_code == 200

        late = (await elsewhere.post("/notifications/tickets", headers=tenant.headers)).json()
        assert (datetime.fromisoformat(late["ExpiresAt"]) - datetime.now(UTC)).total_seconds() <= 1.5
        await asyncio.sleep(1.6)
        expired = await elsewhere.get("/notifications", params={"Ticket": late["Ticket"]})
        assert expired.status_code == 401, expired.text


async def test_tickets_count_against_the_accounts_rate_limit(
    settings: Settings, http: httpx.AsyncClient
) -> None:
    tenant = await onboard(http, "Many Tickets")
    async with own_api(settings, command_rate=1, command_burst=3) as client:
        answers = [(await client.post("/notifications/tickets", headers=tenant.headers)) for _ in range(5)]
    assert [a.status_code for a in answers][:3] == [201, 201, 201]
    refused = [a for a in answers if a.status_code == 429]
    assert refused, [a.status_code for a in answers]
    assert all(int(a.headers["retry-after"]) >= 1 for a in refused)
