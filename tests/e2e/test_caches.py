"""What an API caches for a minute (a key's route, an account's custom attributes) is forgotten by
every API process as soon as it changes, and the key cache is bounded in bytes whatever it is sent."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from core.settings import MAIN_DATABASE, Settings
from erp.app import create_app
from erp.bootstrap import Container
from tenancy.keys import KeyCache
from tests.conftest import onboard, serve, with_port


@pytest.fixture(scope="module")
async def replicas(settings: Settings, worker: None) -> AsyncIterator[tuple[httpx.AsyncClient, ...]]:
    """Two API processes' worth of apps on the session's stack, each caching for a minute."""
    clients = []
    servers = []
    for _ in range(2):
        own = replace(with_port(settings), cache_ttl=60.0)
        servers.append(await serve(create_app(own), own.http_port))
        clients.append(httpx.AsyncClient(base_url=f"http://127.0.0.1:{own.http_port}", timeout=30))
    yield tuple(clients)
    for client in clients:
        await client.aclose()
    for server, task in servers:
        server.should_exit = True
        await task


def order(**custom: Any) -> dict[str, Any]:
    return {
        "OrderId": str(uuid.uuid4()),
        "CustomerName": "Cached",
        "OrderLines": [{"ProductCode": "P", "Quantity": 1, "UnitPrice": "1.00"}],
        **({"Custom": custom} if custom else {}),
    }


async def test_an_attribute_defined_on_one_api_is_known_to_the_other_at_once(
    replicas: tuple[httpx.AsyncClient, ...],
) -> None:
    """A required attribute defined through one API is required by the other at once, though the
    other holds the account's definitions (none) for a minute."""
    one, other = replicas
    tenant = await onboard(one, "Customised")
    placed = await other.post("/commands/PlaceOrder", json=order(), headers=tenant.headers)
    assert placed.status_code == 200, placed.text  # `other` now holds the account's definitions
    defined = await one.post(
        "/customisations",
        json={"Element": "Order", "Attribute": "Region", "Type": "string", "Required": True},
        headers=tenant.headers,
    )
    assert defined.status_code == 201, defined.text
    deadline = time.monotonic() + 5
    while True:
        refused = await other.post("/commands/PlaceOrder", json=order(), headers=tenant.headers)
        if refused.status_code != 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert refused.status_code == 422, refused.text
    assert "Region" in refused.json()["detail"]
    placed = await other.post("/commands/PlaceOrder", json=order(Region="North"), headers=tenant.headers)
    assert placed.status_code == 200, placed.text


async def test_the_key_cache_is_bounded_and_keeps_no_key_itself(settings: Settings) -> None:
    async with Container(settings, min_pool=1, max_pool=2).running() as container:
        cache = KeyCache(container.catalog, max_known=5, max_unknown=3)
        huge = "x" * (4 * 1024 * 1024)
        for n in range(20):
            assert await cache.resolve(f"{huge}{n}") is None
        assert len(cache) == 0  # longer than any key: not even looked up, so not remembered
        for n in range(20):
            assert await cache.resolve(f"erp_{n:043d}") is None
        keys = [container.catalog.register(f"Cached {n}", MAIN_DATABASE) for n in range(8)]
        registered = [await k for k in keys]
        for account, _ in registered:
            await container.onboarding.activate(account.account_id)
        for account, key in registered:
            owner = await cache.resolve(key)
            assert owner is not None and owner.route.account_id == account.account_id
        assert len(cache) == 5 + 3
        assert all(len(hashed) == 32 for hashed in [*cache._known, *cache._unknown])  # digests only

        account, key = registered[-1]
        cache.forget_account(account.account_id)
        assert len(cache) == 4 + 3


async def test_a_key_is_not_served_past_its_expiry(settings: Settings) -> None:
    async with Container(settings, min_pool=1, max_pool=2).running() as container:
        cache = KeyCache(container.catalog, ttl=60.0)
        account, _ = await container.catalog.register("Expiring", MAIN_DATABASE)
        await container.onboarding.activate(account.account_id)
        expires = datetime.now(UTC) + timedelta(seconds=1)
        key = await container.catalog.issue_key(account.account_id, expires_at=expires)
        assert await cache.resolve(key) is not None
        await asyncio.sleep(1.2)
        assert await cache.resolve(key) is None
