"""Onboarding that does not finish in time loses nothing: the account is answered as Onboarding,
its key gets 503 with Retry-After until the workflow ends, and a worker finishes what was started,
or starts what never was (its sweep), with no operator stepping in."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest

from core.settings import MAIN_DATABASE, Settings
from core.temporal import TemporalGateway
from erp.worker import run_worker
from tenancy.catalog import AccountCatalog, AccountStatus
from tenancy.onboarding import Onboarding
from tenancy.routing import Databases
from workflows.starters import TemporalOnboarding


@pytest.fixture
async def databases(settings: Settings) -> AsyncIterator[Databases]:
    databases = await Databases(settings, min_size=1, max_size=2).open()
    yield databases
    await databases.close()


@pytest.fixture
def catalog(databases: Databases) -> AccountCatalog:
    return AccountCatalog(databases)


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        await asyncio.sleep(0.2)


async def serving(settings: Settings) -> tuple[asyncio.Event, asyncio.Task[None]]:
    """A worker of its own on `settings.task_queue`, stopped by setting the event."""
    stop = asyncio.Event()
    return stop, asyncio.create_task(run_worker(settings, stop))


async def status_of(http: httpx.AsyncClient, operator: dict[str, str], account_id: Any) -> str:
    response = await http.get(f"/accounts/{account_id}", headers=operator)
    assert response.status_code == 200, response.text
    status: str = response.json()["Status"]
    return status


async def test_late_onboarding_answers_onboarding_then_503_until_a_worker_finishes_it(
    settings: Settings,
    catalog: AccountCatalog,
    databases: Databases,
    http: httpx.AsyncClient,
    operator: dict[str, str],
) -> None:
    unserved = replace(settings, task_queue=f"erp-unserved-{uuid.uuid4().hex[:8]}")
    gateway = TemporalGateway(unserved)
    gateway.identify(await catalog.deployment())
    onboarding = Onboarding(catalog, databases, TemporalOnboarding(gateway))
    account, api_key, status = await onboarding.open("Late", wait=timedelta(seconds=1))
    assert status == AccountStatus.ONBOARDING
    assert await status_of(http, operator, account.account_id) == "Onboarding"

    headers = {"Authorization": f"Bearer {api_key}"}
    refused = await http.get("/queries/GetOrders", params={"CustomerName": "x"}, headers=headers)
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "still being onboarded" in refused.json()["detail"]

    stop, worker = await serving(unserved)
    try:

        async def active() -> bool:
            return await status_of(http, operator, account.account_id) == "Active"

        await eventually(active, 30, "the waiting workflow to finish once a worker serves its queue")
        served = await http.get("/queries/GetOrders", params={"CustomerName": "x"}, headers=headers)
        assert served.status_code == 200, served.text
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)


async def test_a_worker_starts_onboarding_that_never_started(
    settings: Settings, catalog: AccountCatalog, http: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    # Registered, but its workflow was never started (Temporal unreachable at that moment).
    account, api_key = await catalog.register("Never started", MAIN_DATABASE)
    assert await status_of(http, operator, account.account_id) == "Onboarding"

    stop, worker = await serving(replace(settings, task_queue=f"erp-sweep-{uuid.uuid4().hex[:8]}"))
    try:

        async def active() -> bool:
            return await status_of(http, operator, account.account_id) == "Active"

        await eventually(active, 30, "the worker's sweep to onboard the account")
        headers = {"Authorization": f"Bearer {api_key}"}
        served = await http.get("/queries/GetOrders", params={"CustomerName": "x"}, headers=headers)
        assert served.status_code == 200, served.text
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
