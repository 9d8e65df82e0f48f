"""Shared fixtures: a fresh database, a real Temporal dev server, the worker and the API.

Everything here talks to a real Postgres, Redis and a Temporal dev server that the session starts
itself. Postgres is ERP_TEST_DATABASE_URL's, else the machine's on 127.0.0.1:5432; Redis is
REDIS_URL's, else the machine's on 127.0.0.1:6379. When one of them does not answer there, or
with ERP_TEST_EMBEDDED=1 (CI's proof of the embedded path), the session starts an embedded one
(`erp.embedded`: PostgreSQL 18, Redis 6.2) on a free port in a temporary directory, and removes
both at the end. Each session migrates its own database under a fresh name and drops it at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
import uvicorn
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core.db import create_pool
from core.settings import Settings
from core.telemetry import configure_telemetry
from erp.app import create_app
from erp.devserver import answers, create_database, drop_database, free_port, start_temporal, with_database
from erp.embedded import embedded_postgres, embedded_redis
from erp.http_protocol import ProblemHttpProtocol
from erp.migrate import upgrade_async
from erp.worker import run_worker
from tests.redis_cluster import REDIS_SERVER, ClusterNodes, redis_cluster

OPERATOR_TOKEN = "test-operator-token"
BASE_DATABASE_URL = os.environ.get("ERP_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
"""Where the session's databases are made; an embedded server's when `pytest_configure` starts one."""
EMBEDDED = os.environ.get("ERP_TEST_EMBEDDED", "").lower() in {"1", "true", "yes"}
"""Embedded Postgres and Redis even though the machine's answer (`.ci/run` shows that path works)."""
_EMBEDDED_SERVICES = contextlib.ExitStack()


def pytest_configure(config: pytest.Config) -> None:
    """Embedded Postgres and Redis for the session where needed (see the module's docstring), before
    any test module is imported: some read `Settings().redis_url` or BASE_DATABASE_URL at import."""
    global BASE_DATABASE_URL
    need_postgres = EMBEDDED or (
        not os.environ.get("ERP_TEST_DATABASE_URL") and not answers("127.0.0.1:5432")
    )
    need_redis = EMBEDDED or (not os.environ.get("REDIS_URL") and not answers("127.0.0.1:6379"))
    if not (need_postgres or need_redis):
        return
    root = Path(tempfile.mkdtemp(prefix="erp-test-services-"))
    _EMBEDDED_SERVICES.callback(shutil.rmtree, root, ignore_errors=True)  # the last to run
    try:
        if need_postgres:
            postgres = _EMBEDDED_SERVICES.enter_context(embedded_postgres(root / "postgres", fast=True))
            BASE_DATABASE_URL = postgres.url("postgres")
            os.environ["ERP_TEST_DATABASE_URL"] = BASE_DATABASE_URL
        if need_redis:
            redis = _EMBEDDED_SERVICES.enter_context(embedded_redis(root / "redis"))
            os.environ["REDIS_URL"] = redis.url()  # Settings() and the processes tests start read it
    except BaseException:
        _EMBEDDED_SERVICES.close()
        raise


def pytest_unconfigure(config: pytest.Config) -> None:
    _EMBEDDED_SERVICES.close()


SPANS = InMemorySpanExporter()
"""Every span the session's API, worker and tests record (tracing is on for the whole suite)."""


METRICS = InMemoryMetricReader()


@pytest.fixture(scope="session", autouse=True)
def tracing() -> InMemorySpanExporter:
    configure_telemetry("erp-test", SimpleSpanProcessor(SPANS), readers=[METRICS])
    return SPANS


@pytest.fixture(scope="session")
def metric_reader(tracing: InMemorySpanExporter) -> InMemoryMetricReader:
    return METRICS


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Every data point the reader holds, by metric name."""
    data = reader.get_metrics_data()
    found: dict[str, list[Any]] = {}
    if data is None:
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def _temporal_server() -> Iterator[str]:
    """A Temporal dev server on a free port, stopped afterwards."""
    address = f"127.0.0.1:{free_port()}"
    process = start_temporal(address)
    yield address
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="session")
def temporal_address() -> Iterator[str]:
    yield from _temporal_server()


@pytest.fixture(scope="session")
def cluster_nodes() -> Iterator[ClusterNodes]:
    """A three-node Redis Cluster of the session's own, on free ports (never the machine's 6379)."""
    if not os.access(REDIS_SERVER, os.X_OK):  # no wheel ships a Redis >= 7 (sharded pub/sub)
        pytest.skip(f"the cluster tests need the machine's Redis >= 7 ({REDIS_SERVER}, redis-cli)")
    with redis_cluster() as nodes:
        yield nodes


async def fresh_database() -> str:
    url = with_database(BASE_DATABASE_URL, f"erp_test_{uuid.uuid4().hex[:12]}")
    await create_database(url)
    try:
        await upgrade_async(Settings(database_url=url))
    except BaseException:
        await drop_database(url)  # a migration that fails must not leave its database behind
        raise
    return url


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    url = await fresh_database()
    yield url
    await drop_database(url)


@pytest.fixture
async def own_pool() -> AsyncIterator[asyncpg.Pool[Any]]:
    """A pool on a database of the test's own, for tests that count what the whole database holds."""
    url = await fresh_database()
    pool = await create_pool(Settings(database_url=url), min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()
        await drop_database(url)


@pytest.fixture(scope="session")
def settings(database_url: str, temporal_address: str) -> Settings:
    return Settings(
        database_url=database_url,
        temporal_address=temporal_address,
        task_queue=f"erp-test-{uuid.uuid4().hex[:8]}",
        operator_token=OPERATOR_TOKEN,
        http_port=free_port(),
        cache_ttl=1.0,  # keys revoked or expired in SQL stop working within a second
        auth_failures=0,  # the suite's refused keys all come from 127.0.0.1 (tests/e2e/test_auth_failures.py)
    )


@pytest.fixture(scope="session")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await create_pool(settings, min_size=2, max_size=30)
    yield pool
    await pool.close()


async def make_account(pool: asyncpg.Pool[Any], name: str = "Test") -> UUID:
    """An active account, created directly in SQL (no workflow; partitions are fixed, so no DDL)."""
    account_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO accounts (account_id, name, status) VALUES ($1, $2, 'Active')", account_id, name
    )
    return account_id


@pytest.fixture
async def account_id(pool: asyncpg.Pool[Any]) -> UUID:
    return await make_account(pool)


@pytest.fixture(scope="session")
async def worker(settings: Settings) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop))
    await asyncio.sleep(0)
    yield
    stop.set()
    await asyncio.wait_for(task, 30)


async def serve(app: Any, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", http=ProblemHttpProtocol
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    return server, task


@contextlib.asynccontextmanager
async def private_stack(label: str, **settings: Any) -> AsyncIterator[tuple[str, str]]:
    """A database, a Temporal dev server, a worker and an API of their own; yields (API URL, database URL).

    For tests whose writes must not meet the rest of the suite (events are immutable, so what a
    test stores stays stored). The database is dropped afterwards. `settings` are `Settings` fields
    the worker and the API use instead of the defaults (say `redis_url` and `redis_cluster`).
    """
    database_url = await fresh_database()
    try:
        async with _serving(database_url, label, **settings) as api:
            yield api, database_url
    finally:
        await drop_database(database_url)


@contextlib.asynccontextmanager
async def _serving(database_url: str, label: str, **settings: Any) -> AsyncIterator[str]:
    address = f"127.0.0.1:{free_port()}"
    own = Settings(
        database_url=database_url,
        temporal_address=address,
        task_queue=f"erp-{label}-{uuid.uuid4().hex[:8]}",
        operator_token=OPERATOR_TOKEN,
        http_port=free_port(),
        **settings,
    )
    temporal = await asyncio.to_thread(start_temporal, address)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(own, stop))
    server, server_task = await serve(create_app(own), own.http_port)
    try:
        yield f"http://127.0.0.1:{own.http_port}"
    finally:
        server.should_exit = True
        await server_task
        stop.set()
        await asyncio.wait_for(worker, 30)
        temporal.terminate()
        await asyncio.to_thread(temporal.wait, 30)


@pytest.fixture(scope="session")
async def api(settings: Settings, worker: None, tracing: InMemorySpanExporter) -> AsyncIterator[str]:
    server, task = await serve(create_app(settings), settings.http_port)
    yield f"http://127.0.0.1:{settings.http_port}"
    server.should_exit = True
    await task


@pytest.fixture
async def http(api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        yield client


@pytest.fixture
def operator() -> dict[str, str]:
    return {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


class Tenant:
    """An onboarded account as a client sees it."""

    def __init__(self, account_id: UUID, api_key: str) -> None:
        self.account_id = account_id
        self.api_key = api_key
        self.headers = {"Authorization": f"Bearer {api_key}"}


async def onboard(http: httpx.AsyncClient, name: str = "Tenant") -> Tenant:
    response = await http.post(
        "/accounts", json={"Name": name}, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["Status"] == "Active"
    return Tenant(UUID(body["AccountId"]), body["ApiKey"])


@pytest.fixture
async def tenant(http: httpx.AsyncClient) -> Tenant:
    return await onboard(http)


def with_port(settings: Settings) -> Settings:
    return replace(settings, http_port=free_port())


@contextlib.asynccontextmanager
async def own_api(settings: Settings, **changes: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An API of its own, on `settings` (the session's database, worker and Temporal) with
    `changes` (say a small limit), on a free port; a client of it for the block."""
    own = replace(with_port(settings), **changes)
    server, task = await serve(create_app(own), own.http_port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{own.http_port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        await task


@dataclass
class TwoDatabases:
    """A stack of its own with two tenant databases (`big` dedicated: new accounts never go there),
    a worker, and two APIs on it that differ only in how long they cache keys and routes."""

    settings: Settings
    http: httpx.AsyncClient
    """The API of `settings`."""
    other: httpx.AsyncClient
    """The API whose `cache_ttl` is `other_cache_ttl`."""
    main: asyncpg.Pool[Any]
    big: asyncpg.Pool[Any]


@contextlib.asynccontextmanager
async def two_databases(
    temporal_address: str, name: str, other_cache_ttl: float, **changes: Any
) -> AsyncIterator[TwoDatabases]:
    """Fresh `main` and `big` databases, a worker on task queue `erp-<name>-...` and two APIs
    (`changes` to the first's settings; the other's cache for `other_cache_ttl` s); all stopped
    and dropped afterwards."""
    main_url, big_url = await fresh_database(), await fresh_database()
    settings = Settings(
        database_url=main_url,
        extra_databases=f"big={big_url}",
        dedicated_databases="big",
        temporal_address=temporal_address,
        task_queue=f"erp-{name}-{uuid.uuid4().hex[:8]}",
        operator_token=OPERATOR_TOKEN,
        http_port=free_port(),
    )
    settings = replace(settings, **changes)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop))
    server, server_task = await serve(create_app(settings), settings.http_port)
    other_settings = replace(settings, http_port=free_port(), cache_ttl=other_cache_ttl)
    other_server, other_task = await serve(create_app(other_settings), other_settings.http_port)
    main = await create_pool(settings, min_size=1, max_size=4)
    big = await create_pool(settings.for_database("big"), min_size=1, max_size=4)
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}", timeout=60) as http,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{other_settings.http_port}", timeout=60) as other,
        ):
            yield TwoDatabases(settings, http, other, main, big)
    finally:
        await main.close()
        await big.close()
        for running, task in ((server, server_task), (other_server, other_task)):
            running.should_exit = True
            await task
        stop.set()
        await asyncio.wait_for(worker, 30)
        await drop_database(main_url)
        await drop_database(big_url)


@pytest.fixture(scope="module")
def module_temporal() -> Iterator[str]:
    """A Temporal dev server of the test module's own, so its workflows meet no other worker."""
    yield from _temporal_server()


def start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    """`erp worker` as a process of its own (for tests that kill it), on `settings`' database,
    Temporal server and task queue; its output is thrown away."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "ERP_TASK_QUEUE": settings.task_queue,
    }
    erp = os.path.join(os.path.dirname(sys.executable), "erp")
    return subprocess.Popen([erp, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
