"""A browser client on another origin (headless Chromium through Playwright): a static page served by
a second local HTTP server places an order with `fetch` and follows its read model with
`EventSource`, as a single-page app of a tenant would.

DEPENDS ON issue #14's CORS and notification tickets, built on another branch and merged later:
`ERP_CORS_ORIGINS` (the origins the API answers with CORS headers), `POST /notifications/tickets`
(tenant key) -> `{"Ticket","ExpiresAt"}`, `GET /notifications?Ticket=...` (an EventSource cannot
send an Authorization header) and SSE `id:` lines. Until that is in the tree the test skips, saying
so; once the API reads ERP_CORS_ORIGINS it runs (and fails if the rest of the contract is missing).

What it checks: from an allowed origin the preflighted `fetch` of PlaceOrder succeeds and the
EventSource, opened with a ticket, receives the order's notification with an event id; from an
origin not allowed the browser refuses to hand the page the API's answer.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from core.settings import Settings
from erp.devserver import free_port
from tests.conftest import Tenant, own_api
from tests.e2e.browser import chromium, installed
from tests.e2e.test_http_contract import order_body

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
    """The Settings fields ERP_CORS_ORIGINS=`origin` sets, whatever they are named; skips the test
    while the API does not read that variable (the feature is on its way from another branch)."""
    monkeypatch.delenv("ERP_CORS_ORIGINS", raising=False)
    without = Settings()
    monkeypatch.setenv("ERP_CORS_ORIGINS", origin)
    with_origin = Settings()
    changes = {
        f.name: getattr(with_origin, f.name)
        for f in fields(Settings)
        if getattr(with_origin, f.name) != getattr(without, f.name)
    }
    if not changes:
        pytest.skip("depends on #14's ERP_CORS_ORIGINS and notification tickets, not merged here yet")
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
