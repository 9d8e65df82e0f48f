"""GET /notifications over HTTP with the real worker: every event has an id that carries what the
client was told; a reconnect with Last-Event-ID hears first the positions that moved since (as a
consistency wait would read them), then live ones; an idle stream pings."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from core.redis_client import redis_client
from core.settings import Settings
from queries.notifications import channel_for
from queries.sse import LAST_EVENT_ID, RETRY_MS
from tests.conftest import Tenant, onboard, own_api


@dataclass
class Event:
    id: str | None = None
    event: str | None = None
    retry: str | None = None
    data: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    @property
    def note(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads("\n".join(self.data))
        return body


async def events(stream: httpx.Response) -> AsyncIterator[Event]:
    """Each event (or comment block) of an SSE stream, as a browser's parser splits them."""
    current = Event()
    async for line in stream.aiter_lines():
        if line == "":
            if current.data or current.event or current.comments:
                yield current
            current = Event()
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "":
            current.comments.append(value)
        elif name == "id":
            current.id = value
        elif name == "event":
            current.event = value
        elif name == "retry":
            current.retry = value
        elif name == "data":
            current.data.append(value)


async def place(http: httpx.AsyncClient, tenant: Tenant) -> dict[str, Any]:
    response = await http.post(
        "/commands/PlaceOrder",
        headers=tenant.headers,
        json={
            "OrderId": str(uuid.uuid4()),
            "CustomerName": "Streamed Customer",
            "OrderLines": [{"ProductCode": "S-1", "Quantity": 1, "UnitPrice": "1.00"}],
        },
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def consistent(http: httpx.AsyncClient, tenant: Tenant, token: str) -> None:
    params = {"ConsistentWith": token, "Timeout": 20, "CustomerName": "Streamed Customer"}
    answer = await http.get("/queries/GetOrders", params=params, headers=tenant.headers)
    assert answer.status_code == 200, answer.text


async def first_order_event(http: httpx.AsyncClient, tenant: Tenant, stream: httpx.Response) -> Event:
    """Orders placed until one is announced (the stream subscribes just after its headers)."""
    reader = events(stream)
    for _ in range(10):
        await place(http, tenant)
        try:
            return await asyncio.wait_for(anext(reader), 3)
        except TimeoutError:
            continue
    raise AssertionError("no order was announced")


async def test_a_reconnect_with_last_event_id_hears_what_it_missed_then_live_events(
    http: httpx.AsyncClient,
) -> None:
    tenant = await onboard(http, "Resumed")
    async with asyncio.timeout(90):
        async with http.stream("GET", "/notifications", headers=tenant.headers) as stream:
            first = await first_order_event(http, tenant, stream)
        assert first.event is None
        told = first.note["Position"]
        assert first.note == {"Projection": "orders", "StreamType": "Order", "Position": told}
        assert first.id == f"orders.Order={told}"

        # Missed while away: a person registered and two more orders, all in the read models
        # before we are back.
        person = await http.post(
            "/commands/RegisterPerson",
            headers=tenant.headers,
            json={"PersonId": str(uuid.uuid4()), "Name": "Away Person"},
        )
        assert person.status_code == 200, person.text
        registered = person.json()["Positions"]["Person"]
        await place(http, tenant)
        latest = (await place(http, tenant))["Positions"]["Order"]
        await consistent(http, tenant, f"Order:{latest},Person:{registered}")

        resumed = {**tenant.headers, "Last-Event-ID": first.id}
        async with http.stream("GET", "/notifications", headers=resumed) as stream:
            reader = events(stream)
            caught_up = [await asyncio.wait_for(anext(reader), 10) for _ in range(3)]
            # Each read model and stream type that moved, at its current position (the orders read
            # model shows persons' names, so it says how far it shows them), in the id's order.
            assert [e.note for e in caught_up] == [
                {"Projection": "customers", "StreamType": "Person", "Position": registered},
                {"Projection": "orders", "StreamType": "Order", "Position": latest},
                {"Projection": "orders", "StreamType": "Person", "Position": registered},
            ]
            assert [e.id for e in caught_up] == [
                f"customers.Person={registered},orders.Order={told}",
                f"customers.Person={registered},orders.Order={latest}",
                f"customers.Person={registered},orders.Order={latest},orders.Person={registered}",
            ]
            # Then live events, the id still carrying everything told.
            live = (await place(http, tenant))["Positions"]["Order"]
            event = await asyncio.wait_for(anext(reader), 20)
            assert event.note == {"Projection": "orders", "StreamType": "Order", "Position": live}
            assert event.id == f"customers.Person={registered},orders.Order={live},orders.Person={registered}"

        # Told everything already: nothing to catch up with, only live events.
        async with http.stream(
            "GET", "/notifications", headers={**tenant.headers, "Last-Event-ID": event.id}
        ) as s:
            reader = events(s)
            again = (await place(http, tenant))["Positions"]["Order"]
            event = await asyncio.wait_for(anext(reader), 20)
            assert event.note == {"Projection": "orders", "StreamType": "Order", "Position": again}

        # A Last-Event-ID that cannot be read is taken for one that was told nothing.
        await consistent(http, tenant, f"Order:{again}")
        garbled = {**tenant.headers, "Last-Event-ID": "orders.Order=banana"}
        async with http.stream("GET", "/notifications", headers=garbled) as stream:
            reader = events(stream)
            caught_up = [await asyncio.wait_for(anext(reader), 10) for _ in range(3)]
            assert [(e.note["Projection"], e.note["StreamType"], e.note["Position"]) for e in caught_up] == [
                ("customers", "Person", registered),
                ("orders", "Order", again),
                ("orders", "Person", registered),
            ]


async def test_a_browser_resumes_with_a_new_ticket_and_last_event_id_in_the_query(
    http: httpx.AsyncClient,
) -> None:
    """What a browser can send (no headers): a new ticket and `LastEventId`; the stream asks for
    RETRY_MS between reconnects before anything else."""
    tenant = await onboard(http, "Resumed By Query")
    document = (await http.get("/schema/openapi.json")).json()
    operation = document["paths"]["/notifications"]["get"]
    assert ("query", LAST_EVENT_ID) in {(p["in"], p["name"]) for p in operation["parameters"]}
    assert f"{LAST_EVENT_ID}=" in operation["description"], "the route says how a browser resumes"

    async def ticket() -> str:
        issued = await http.post("/notifications/tickets", headers=tenant.headers)
        assert issued.status_code == 201, issued.text
        value: str = issued.json()["Ticket"]
        return value

    async with asyncio.timeout(90):
        async with http.stream("GET", "/notifications", params={"Ticket": await ticket()}) as stream:
            first = await first_order_event(http, tenant, stream)
        assert first.retry == str(RETRY_MS), "sent first, so it comes with the first event"
        assert first.id == f"orders.Order={first.note['Position']}"
        missed = (await place(http, tenant))["Positions"]["Order"]
        await consistent(http, tenant, f"Order:{missed}")

        params = {"Ticket": await ticket(), LAST_EVENT_ID: first.id}
        async with http.stream("GET", "/notifications", params=params) as stream:
            caught_up = await asyncio.wait_for(anext(events(stream)), 10)
        assert caught_up.note == {"Projection": "orders", "StreamType": "Order", "Position": missed}
        assert caught_up.id == f"orders.Order={missed}"

        # Sent both ways, the header wins: told everything (header), nothing is caught up, though
        # the query's id would have the stream tell `missed` again.
        both = {**tenant.headers, "Last-Event-ID": caught_up.id}
        async with http.stream(
            "GET", "/notifications", headers=both, params={LAST_EVENT_ID: first.id}
        ) as stream:
            event = await first_order_event(http, tenant, stream)
        assert event.note["Position"] > missed, event


async def test_an_idle_stream_pings(settings: Settings, http: httpx.AsyncClient) -> None:
    tenant = await onboard(http, "Pinged")
    async with (
        own_api(settings, sse_ping=0.2) as client,
        asyncio.timeout(30),
        client.stream("GET", "/notifications", headers=tenant.headers) as stream,
    ):
        reader = events(stream)
        started = asyncio.get_running_loop().time()
        pings = [await anext(reader) for _ in range(3)]
        elapsed = asyncio.get_running_loop().time() - started
    assert all(p.comments == ["ping"] and not p.data and p.id is None for p in pings), pings
    assert 0.4 <= elapsed < 3, elapsed


def _slow_client(port: int, key: str) -> socket.socket:
    """A client that asks for the stream with a small receive window, then reads nothing."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /notifications HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n".encode())
    return sock


def _read_to_end(sock: socket.socket) -> bytes:
    sock.settimeout(20)
    received = bytearray()
    while not received.endswith(b"\r\n0\r\n\r\n"):  # the chunked body's end: the server closed it
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return bytes(received)


async def test_a_client_too_slow_for_its_notifications_is_told_and_its_stream_closed(
    settings: Settings, http: httpx.AsyncClient
) -> None:
    tenant = await onboard(http, "Slow Reader")
    channel = channel_for(tenant.account_id)
    async with own_api(settings, notification_backlog=20) as client:
        port = int(str(client.base_url).rsplit(":", 1)[1].rstrip("/"))
        sock = await asyncio.to_thread(_slow_client, port, tenant.api_key)
        try:
            redis = redis_client(settings.redis_url)
            try:
                for _ in range(200):
                    if (await redis.pubsub_numsub(channel))[0][1] >= 1:
                        break
                    await asyncio.sleep(0.05)
                # Far more than the socket's buffers and the backlog hold, while the client reads nothing.
                for start in range(1, 20_001, 5_000):
                    async with redis.pipeline(transaction=False) as pipe:
                        for p in range(start, start + 5_000):
                            pipe.publish(
                                channel, f'{{"Projection":"orders","StreamType":"Order","Position":{p}}}'
                            )
                        await pipe.execute()
            finally:
                await redis.aclose()
            received = (await asyncio.to_thread(_read_to_end, sock)).decode()
        finally:
            sock.close()
    assert received.startswith("HTTP/1.1 200"), received[:200]
    assert received.endswith("\r\n0\r\n\r\n"), "the server did not close the stream"
    positions = [int(p) for p in re.findall(r'"Position":(\d+)', received)]
    # Positions are cumulative (a read model at 870 shows 1 to 869 too): the stream may skip some,
    # never go back, and stops telling once its backlog overflowed.
    assert positions and positions == sorted(set(positions)), positions[:50]
    assert positions[-1] < 20_000
    assert "event: overflow" in received
    told = re.findall(r"id: (\S+)\r\nevent: overflow", received)
    assert told == [f"orders.Order={positions[-1]}"], "the overflow's id is the last position told"
