"""A browser client on another origin (headless Chromium through Playwright): a static page served by
a second local HTTP server places an order with `fetch` and follows its read model with
`EventSource`, as a single-page app of a tenant would.

It uses `ERP_CORS_ORIGINS` (the origins the API answers with CORS headers), `POST
/notifications/tickets` (tenant key) -> `{"Ticket","ExpiresAt"}`, `GET /notifications?Ticket=...`
(an EventSource cannot send an Authorization header) and SSE `id:` lines.

What it checks: from an allowed origin the preflighted `fetch` of PlaceOrder succeeds and the
EventSource, opened with a ticket, receives the order's notification with an event id; from an
origin not allowed the browser refuses to hand the page the API's answer.

And that such a page resumes: a ticket is good once, so an EventSource's own reconnect is refused;
the page's `follow` closes it on error and reopens with a new ticket and `LastEventId`. With the API
stopped (its streams end) and an order placed meanwhile through another API process, the page,
once the API is back on its port, first hears that order's position; a page that reopens without
`LastEventId` does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from core.settings import Settings
from erp.cli.serve import api_server
from erp.devserver import free_port
from tests.conftest import Tenant, own_api, with_port
from tests.e2e.browser import chromium, installed
from tests.e2e.test_http_contract import order_body
from tests.e2e.test_notification_stream import consistent, place

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>A tenant's app</title></head>
<body><h1>A tenant's app on another origin</h1><pre id="log"></pre>
<script>
"use strict";
const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };

// Place an order and see its notification arrive: {placed, ticket, received, lastEventId}.
async function placeAndFollow(api, key, order) {
  const auth = { Authorization: `Bearer ${key}` };
  const ticketAnswer = await fetch(`${api}/notifications/tickets`, { method: "POST", headers: auth });
  if (!ticketAnswer.ok) throw new Error(`ticket: ${ticketAnswer.status} ${await ticketAnswer.text()}`);
  const ticket = await ticketAnswer.json();
  log(`ticket, expires at ${ticket.ExpiresAt}`);
  const received = [];
  const source = new EventSource(`${api}/notifications?Ticket=${encodeURIComponent(ticket.Ticket)}`);
  await new Promise((resolve, reject) => {
    source.onopen = resolve;
    source.onerror = () => reject(new Error("the EventSource could not open"));
  });
  log("subscribed");
  let seen;
  const arrived = new Promise((resolve) => { seen = resolve; });
  let wanted = null;
  source.onmessage = (event) => {
    const data = JSON.parse(event.data);
    received.push({ data, id: event.lastEventId });
    log(`notified: ${event.data} (id ${event.lastEventId})`);
    if (wanted !== null && data.StreamType === "Order" && data.Position >= wanted) seen(event.lastEventId);
  };
  const answer = await fetch(`${api}/commands/PlaceOrder`, {
    method: "POST",
    headers: { ...auth, "Content-Type": "application/json" },
    body: JSON.stringify(order),
  });
  const placed = await answer.json();
  if (!answer.ok) throw new Error(`PlaceOrder: ${answer.status} ${JSON.stringify(placed)}`);
  log(`placed: ${JSON.stringify(placed)}`);
  wanted = placed.Positions.Order;
  const early = received.find((r) => r.data.StreamType === "Order" && r.data.Position >= wanted);
  if (early) seen(early.id);
  const timeout = new Promise((_, reject) => {
    setTimeout(() => reject(new Error("no notification in 15 s")), 15000);
  });
  const lastEventId = await Promise.race([arrived, timeout]);
  source.close();
  return { placed, ticket, received, lastEventId };
}

// Follow the account's notifications as an app would, for as long as the page lives: the state
// it keeps is `followers[name]`. The EventSource cannot resume by itself (its own reconnect reuses
// a used ticket), so on its error the page closes it and, after a back-off, asks a new ticket and
// opens a new one with `LastEventId` (the last id seen), unless `resume` is false (the control).
const followers = {};
function follow(name, api, key, resume) {
  const state = { opens: [], received: [], errors: 0, lastEventId: "" };
  followers[name] = state;
  let delay = 100;
  const again = (why) => {
    state.errors += 1;
    log(`${name}: ${why}; again in ${delay} ms`);
    setTimeout(connect, delay);
    delay = Math.min(delay * 2, 1000);  // an app would wait longer, with jitter: a test waits less
  };
  async function connect() {
    let ticket;
    try {
      const answer = await fetch(`${api}/notifications/tickets`, {
        method: "POST", headers: { Authorization: `Bearer ${key}` },
      });
      if (!answer.ok) throw new Error(`ticket: ${answer.status}`);
      ticket = (await answer.json()).Ticket;
    } catch (error) {
      again(`no ticket (${error})`);
      return;
    }
    const from = resume ? state.lastEventId : "";
    let url = `${api}/notifications?Ticket=${encodeURIComponent(ticket)}`;
    if (from) url += `&LastEventId=${encodeURIComponent(from)}`;
    const source = new EventSource(url);
    const connection = state.opens.length;
    source.onopen = () => {
      delay = 100;
      state.opens.push({ from, firstReceived: state.received.length });
      log(`${name}: open (LastEventId ${from || "none"})`);
    };
    source.onmessage = (event) => {
      state.lastEventId = event.lastEventId;
      state.received.push({ data: JSON.parse(event.data), id: event.lastEventId, connection });
      log(`${name}: ${event.data} (id ${event.lastEventId})`);
    };
    source.onerror = () => {
      source.close();
      again("the stream ended or did not open");
    };
  }
  connect();
}

// What a page of an origin the API does not allow gets: the error fetch raises, or the status.
async function tryFetch(api, key) {
  try {
    const headers = { Authorization: `Bearer ${key}` };
    const answer = await fetch(`${api}/queries/GetOrders?CustomerName=x`, { headers });
    return `answered ${answer.status}`;
  } catch (error) {
    return `refused: ${error.name}`;
  }
}
</script></body></html>
"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *_: Any) -> None:
        pass


@contextlib.contextmanager
def static_site() -> Iterator[str]:
    """The page, served on a port of its own: its origin."""
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def cors_settings(monkeypatch: pytest.MonkeyPatch, origin: str) -> dict[str, Any]:
    """The Settings that ERP_CORS_ORIGINS=`origin` makes (read from the environment, as a deployment
    would); a setting that stops reading the variable fails the test rather than skipping it."""
    monkeypatch.setenv("ERP_CORS_ORIGINS", origin)
    changes = {"cors_origins": Settings().cors_origins}
    assert changes == {"cors_origins": origin}
    return changes


async def test_a_page_on_another_origin_places_an_order_and_follows_it(
    settings: Settings, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed()
    with static_site() as allowed, static_site() as stranger:
        changes = cors_settings(monkeypatch, allowed)
        async with own_api(settings, **changes) as api, chromium() as browser:
            base = str(api.base_url).rstrip("/")
            preflight = await api.options(
                "/commands/PlaceOrder",
                headers={
                    "Origin": allowed,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type",
                },
            )
            assert preflight.headers.get("access-control-allow-origin") == allowed, preflight.headers

            page = await browser.new_page()
            await page.goto(allowed)
            order = order_body("Cross Origin")
            result = await page.evaluate(
                "([api, key, order]) => placeAndFollow(api, key, order)", [base, tenant.api_key, order]
            )
            assert result["placed"]["StreamId"] == f"Order-{order['OrderId']}", result
            assert result["ticket"]["Ticket"] and result["ticket"]["ExpiresAt"], result
            assert result["lastEventId"], result  # SSE `id:` lines reach the EventSource
            read = await api.get(
                "/queries/GetOrders",
                params={
                    "CustomerName": "Cross Origin",
                    "ConsistentWith": result["placed"]["ConsistencyToken"],
                },
                headers=tenant.headers,
            )
            assert [item["OrderId"] for item in read.json()["Items"]] == [order["OrderId"]], read.text

            other = await browser.new_page()
            await other.goto(stranger)
            refused = await other.evaluate("([api, key]) => tryFetch(api, key)", [base, tenant.api_key])
            assert refused == "refused: TypeError", refused


FOLLOWERS = ("resumed", "control")


async def _serving(settings: Settings) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """`erp api`'s server on settings.http_port: it ends its streams as it stops, as in production."""
    server = api_server(settings, capture_signals=False)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the API did not start"
        await asyncio.sleep(0.05)
    return server, task


async def _stop(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    await asyncio.wait_for(task, 15)


async def _until(page: Page, condition: str, seconds: float = 30) -> None:
    """Until `condition` holds in the page; else fails with what the page logged."""
    try:
        await page.wait_for_function(condition, polling=100, timeout=seconds * 1000)
    except PlaywrightTimeout:
        log = await page.inner_text("#log")
        raise AssertionError(f"not within {seconds} s: {condition}\nthe page's log:\n{log}") from None


def _heard(position: int) -> str:
    return (
        f"{list(FOLLOWERS)}.every((n) => followers[n].received.some("
        f"(r) => r.data.StreamType === 'Order' && r.data.Position >= {position}))"
    )


async def test_a_page_resumes_its_stream_with_its_last_event_id_after_the_server_dropped_it(
    settings: Settings, http: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page follows with two EventSources: `resumed` reopens with its last event id, `control`
    without. API 1 stops while a second order is placed through another API process on the same
    database; when API 1 is back on its port, `resumed` first hears the order it missed, with no
    new command; `control` hears nothing of it."""
    installed()
    with static_site() as origin:
        own = replace(with_port(settings), **cors_settings(monkeypatch, origin))
        base = f"http://127.0.0.1:{own.http_port}"
        server, task = await _serving(own)
        try:
            async with (
                asyncio.timeout(120),
                chromium() as browser,
                httpx.AsyncClient(base_url=base, timeout=30) as first_api,
            ):
                page = await browser.new_page()
                await page.goto(origin)
                for name in FOLLOWERS:
                    await page.evaluate(
                        "([name, api, key]) => { follow(name, api, key, name === 'resumed'); }",
                        [name, base, tenant.api_key],
                    )
                await _until(page, f"{list(FOLLOWERS)}.every((n) => followers[n].opens.length === 1)")
                # The first order, through API 1; again until both heard one (a stream subscribes
                # just after it opens, so an order placed at that moment may go unheard).
                for _ in range(10):
                    first = (await place(first_api, tenant))["Positions"]["Order"]
                    try:
                        await page.wait_for_function(_heard(first), polling=100, timeout=3000)
                        break
                    except PlaywrightTimeout:
                        continue
                else:
                    raise AssertionError("no order was heard by both")

                # API 1 stops: it ends both streams; the page fails to reconnect while it is down.
                await _stop(server, task)
                await _until(page, f"{list(FOLLOWERS)}.every((n) => followers[n].errors >= 1)")
                before = await page.evaluate("() => followers")
                # The order missed, through another API process; the worker projects it.
                second = (await place(http, tenant))["Positions"]["Order"]
                assert second > first
                await consistent(http, tenant, f"Order:{second}")

                # API 1 again, on the same port: the page reopens by itself, with no new command.
                server, task = await _serving(own)
                missed = len(before["resumed"]["received"])
                await _until(page, f"followers.resumed.received.length > {missed}")
                opens = len(before["control"]["opens"])
                await _until(page, f"followers.control.opens.length > {opens}")
                # A resumed stream tells what moved at once: the control has had that long too.
                await asyncio.sleep(1)
                after = await page.evaluate("() => followers")
                log = await page.inner_text("#log")
        finally:
            if not task.done():
                await _stop(server, task)

    resumed = after["resumed"]
    told = before["resumed"]["lastEventId"]
    heard = before["resumed"]["received"][-1]["data"]["Position"]
    assert heard >= first and told == f"orders.Order={heard}", log
    event = resumed["received"][missed]
    position = event["data"]["Position"]
    assert event["data"] == {"Projection": "orders", "StreamType": "Order", "Position": position}, log
    assert position >= second, log
    assert event["id"] == f"orders.Order={position}", log
    reopened = resumed["opens"][event["connection"]]
    assert reopened == {"from": told, "firstReceived": missed}, log  # the first event of a stream resumed
    control = after["control"]
    assert control["received"] == before["control"]["received"], log  # without LastEventId: not told
    assert all(o["from"] == "" for o in control["opens"]), log
