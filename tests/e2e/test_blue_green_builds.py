"""Blue/green builds through Temporal and the operator API: a worker killed in the middle of a build
is replaced and the build goes on from its last heartbeat, ending equal to the read model a fresh
projection made, row for row; an aborted build changes nothing; a build switches queries to the new
version while they keep answering, and its retired version is dropped after the grace period; bad
requests get their 4xx problem."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from commands.service import CommandService
from commands.store.event_store import EventStore
from core.db import create_pool
from core.settings import Settings
from core.temporal import TemporalGateway
from erp.bench.seed import seed_orders
from erp.devserver import drop_database
from queries import versions
from queries.projector import Checkpoints
from queries.registry import PROJECTIONS
from tenancy.catalog import AccountCatalog
from tenancy.routing import Databases
from tests.conftest import OPERATOR_TOKEN, fresh_database, make_account, onboard, private_stack, start_worker
from tests.e2e.test_bulk_onboarding import run_cli
from tests.e2e.test_http_contract import assert_problem
from tests.integration.erp_history import erp_history, read_models
from workflows.starters import TemporalBuilds

pytestmark = pytest.mark.fault

OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
RM_TABLES = "SELECT relname FROM pg_class WHERE relname LIKE 'rm\\_%' AND relkind = 'r' ORDER BY 1"


@pytest.fixture
async def build_settings(module_temporal: str) -> AsyncIterator[Settings]:
    url = await fresh_database()
    yield Settings(
        database_url=url, temporal_address=module_temporal, task_queue=f"erp-build-{uuid.uuid4().hex[:6]}"
    )
    await drop_database(url)


async def caught_up(pool: asyncpg.Pool[Any], within: float = 180) -> None:
    """Every projection has applied every event (the live projectors of the worker)."""
    deadline = time.monotonic() + within
    for projection in PROJECTIONS.values():
        checkpoints = Checkpoints(projection.name, projection.stream_types)
        while (await checkpoints.lag(pool)).events_behind > 0:
            assert time.monotonic() < deadline, f"{projection.name} never caught up"
            await asyncio.sleep(0.2)


async def builds_of(settings: Settings) -> tuple[TemporalBuilds, Databases]:
    databases = await Databases(settings, min_size=1, max_size=2).open()
    gateway = TemporalGateway(settings)
    gateway.identify(await AccountCatalog(databases).deployment())
    return TemporalBuilds(gateway, grace_seconds=600), databases


async def test_a_killed_worker_resumes_the_build_and_it_equals_a_fresh_projection(
    build_settings: Settings,
) -> None:
    pool = await create_pool(build_settings, min_size=2, max_size=8)
    builds, databases = await builds_of(build_settings)
    worker = start_worker(build_settings)
    try:
        service = CommandService(pool, EventStore())
        for seed in range(3):
            await erp_history(service, await make_account(pool), rounds=2, seed=seed)
        for _ in range(4):  # enough orders that the build takes a few seconds
            await seed_orders(pool, await make_account(pool), 60_000)
        await caught_up(pool)
        fresh = await read_models(pool)

        await builds.start("orders", ["main"])
        shadow = Checkpoints("orders@v2", ("Order",))
        deadline = time.monotonic() + 120
        while True:
            lag = await shadow.lag(pool)
            if lag.head and lag.position > lag.head // 5:
                break
            assert time.monotonic() < deadline, "the build never got going"
            await asyncio.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        at_kill = (await shadow.lag(pool)).position
        assert at_kill < lag.head, "killed in the middle of the bulk pass"
        beats: list[int] = []
        worker = start_worker(build_settings)
        deadline = time.monotonic() + 180
        while getattr(await versions.live(pool, "orders"), "version", 0) != 2:
            seen = await builds.seen("orders")
            assert seen is not None and seen.status == "Running", seen
            if seen.progress is not None and seen.progress.attempt > 1:
                beats.append(seen.progress.events)
            assert time.monotonic() < deadline, "the build never switched in"
            await asyncio.sleep(0.2)
        assert await read_models(pool) == fresh
        found = {(v.version, v.state) for v in await versions.versions(pool, "orders")}
        assert found == {(1, versions.State.RETIRED), (2, versions.State.LIVE)}
        # The second attempt went on from what the first committed: it never counted from 0 again.
        assert beats and min(beats) >= at_kill, (at_kill, beats)
    finally:
        worker.kill()
        worker.wait(timeout=10)
        await pool.close()
        await databases.close()


async def test_operators_build_watch_abort_and_switch_through_the_api() -> None:
    async with private_stack("builds", retired_grace=1.0) as (api, url):
        pool = await create_pool(Settings(database_url=url), min_size=1, max_size=4)
        settings = Settings(database_url=url)
        try:
            async with httpx.AsyncClient(base_url=api, timeout=30) as http:
                await _api_flow(http, pool, settings)
        finally:
            await pool.close()


async def projection_item(http: httpx.AsyncClient, name: str = "orders") -> dict[str, Any]:
    response = await http.get("/projections", headers=OPERATOR)
    assert response.status_code == 200, response.text
    [item] = [p for p in response.json() if p["Name"] == name]
    return dict(item)


async def _api_flow(http: httpx.AsyncClient, pool: asyncpg.Pool[Any], settings: Settings) -> None:
    tenant = await onboard(http, "Blue green")
    order_id = str(uuid.uuid4())
    line = {"ProductCode": "P", "Quantity": 1, "UnitPrice": "2.00"}
    placed = await http.post(
        "/commands/PlaceOrder",
        json={"OrderId": order_id, "CustomerName": "Grace", "OrderLines": [line]},
        headers=tenant.headers,
    )
    assert placed.status_code == 200, placed.text
    await seed_orders(pool, tenant.account_id, 150_000)
    await caught_up(pool)
    tables, models = await pool.fetch(RM_TABLES), await read_models(pool)

    # Bad requests: nothing starts, nothing changes.
    assert_problem(await http.post("/projections/nope/rebuild", headers=OPERATOR), 404)
    assert_problem(await http.post("/projections/nope/abort", headers=OPERATOR), 404)
    detail = assert_problem(await http.post("/projections/orders/abort", headers=OPERATOR), 409)["detail"]
    assert "no build of orders is running" in detail

    # A build, aborted while it replays: the new version goes, nothing else changes.
    started = await http.post("/projections/orders/rebuild", headers=OPERATOR)
    assert started.status_code == 202, started.text
    assert_problem(await http.post("/projections/orders/rebuild", headers=OPERATOR), 409)
    for _ in range(200):
        item = await projection_item(http)
        if item.get("Building") and item["Building"]["Position"] > 0:
            break
        await asyncio.sleep(0.05)
    assert item["Building"]["Version"] == 2 and item["Version"] == 1, item
    assert item["Build"]["Phase"] in ("preparing", "building"), item
    aborted = await http.post("/projections/orders/abort", headers=OPERATOR)
    assert aborted.status_code == 202, aborted.text
    for _ in range(300):
        item = await projection_item(http)
        if item.get("Build", {}).get("Status") not in (None, "Running"):
            break
        await asyncio.sleep(0.1)
    assert item["Build"]["Phase"] == "aborted" and "Building" not in item, item
    assert await pool.fetch(RM_TABLES) == tables
    assert await read_models(pool) == models
    states = {(v.version, v.state) for v in await versions.versions(pool, "orders")}
    assert states == {(1, versions.State.LIVE), (2, versions.State.ABORTED)}

    # A build to its end: queries answer throughout, then from the new version; the retired one
    # is dropped after the grace period (a second here).
    started = await http.post("/projections/orders/rebuild", headers=OPERATOR)
    assert started.status_code == 202, started.text
    answered = 0
    for _ in range(600):
        query = await http.get("/queries/GetOrders", params={"CustomerName": "Grace"}, headers=tenant.headers)
        assert query.status_code == 200 and [o["OrderId"] for o in query.json()["Items"]] == [order_id]
        answered += 1
        item = await projection_item(http)
        if item.get("Build", {}).get("Status") == "Completed":
            break
        await asyncio.sleep(0.05)
    assert item["Version"] == 3 and "Building" not in item, item
    assert answered > 1
    # The build has ended; its retired version goes after the grace period (a second here), while
    # another build of the projection may already start.
    for _ in range(100):
        item = await projection_item(http)
        if item["Retired"] == [] and await pool.fetch(RM_TABLES) == tables:
            break
        await asyncio.sleep(0.1)
    assert item["Retired"] == [] and await pool.fetch(RM_TABLES) == tables, "the retired tables are gone"
    assert await read_models(pool) == models
    shown = await asyncio.to_thread(run_cli, settings, "projections", "status")
    assert shown.returncode == 0, shown.stderr
    assert "orders" in shown.stdout and " v3 " in shown.stdout, shown.stdout


async def test_the_cli_builds_with_a_progress_bar_and_refuses_an_abort_with_nothing_to_abort(
    build_settings: Settings,
) -> None:
    pool = await create_pool(build_settings, min_size=1, max_size=4)
    worker = start_worker(build_settings)
    try:
        service = CommandService(pool, EventStore())
        await erp_history(service, await make_account(pool), rounds=2)
        await caught_up(pool)
        before = await read_models(pool)
        refused = await asyncio.to_thread(run_cli, build_settings, "projections", "abort", "customers")
        assert refused.returncode == 1 and "no build of customers is running" in refused.stdout, refused
        unknown = await asyncio.to_thread(run_cli, build_settings, "projections", "rebuild", "nope")
        assert unknown.returncode == 2 and "unknown projection" in unknown.stderr, unknown
        built = await asyncio.to_thread(run_cli, build_settings, "projections", "rebuild", "customers")
        assert built.returncode == 0, (built.stdout, built.stderr)
        assert "switched customers to main v2" in built.stdout, built.stdout
        assert await read_models(pool) == before
        shown = await asyncio.to_thread(run_cli, build_settings, "projections", "status")
        assert "customers        main       v2" in shown.stdout and "retired v1" in shown.stdout, shown.stdout
        # The next build need not wait for the retired version's grace period (an hour) to end.
        again = await asyncio.to_thread(run_cli, build_settings, "projections", "rebuild", "customers")
        assert again.returncode == 0 and "switched customers to main v3" in again.stdout, again
        shown = await asyncio.to_thread(run_cli, build_settings, "projections", "status")
        assert "retired v1, v2" in shown.stdout, shown.stdout
        assert await read_models(pool) == before
    finally:
        worker.kill()
        worker.wait(timeout=10)
        await pool.close()
