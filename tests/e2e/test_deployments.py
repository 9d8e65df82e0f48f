"""Two deployments on one Temporal server never cross-wire: each has its own task queue and workflow
ids (from its catalog database's id), and a worker refuses to serve another deployment's work.

Before deployment ids, two stacks on one Temporal server shared the task queue `erp` and the
workflow ids `projector-orders-main`: one stack's worker projected while the other's read models
stalled, and its ConsistentWith reads timed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import httpx
import pytest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from core.deployment import Deployment, ForeignDeployment
from core.settings import Settings
from erp.app import create_app
from erp.bootstrap import Container
from erp.devserver import drop_database, free_port, start_temporal
from erp.worker import run_worker
from tests.conftest import OPERATOR_TOKEN, fresh_database, onboard, serve
from workflows.messages import ProjectorInput


@dataclass
class Stack:
    settings: Settings
    http: httpx.AsyncClient
    deployment: Deployment


@pytest.fixture(scope="module")
async def shared_temporal() -> AsyncIterator[str]:
    address = f"127.0.0.1:{free_port()}"
    process = await asyncio.to_thread(start_temporal, address)
    yield address
    process.terminate()
    await asyncio.to_thread(process.wait, 30)


@contextlib.asynccontextmanager
async def stack(temporal_address: str) -> AsyncIterator[Stack]:
    """A deployment of its own (database, worker, API) on the shared Temporal server, with the
    default task queue: nothing set that would keep it apart from the other."""
    database_url = await fresh_database()
    settings = Settings(
        database_url=database_url,
        temporal_address=temporal_address,
        task_queue="",
        operator_token=OPERATOR_TOKEN,
        http_port=free_port(),
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop))
    server, server_task = await serve(create_app(settings), settings.http_port)
    try:
        async with Container(settings, min_pool=1, max_pool=1).running() as container:
            deployment = container.temporal.deployment
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}", timeout=30) as http:
            yield Stack(settings, http, deployment)
    finally:
        server.should_exit = True
        await server_task
        stop.set()
        await asyncio.wait_for(worker, 30)
        await drop_database(database_url)


@pytest.fixture(scope="module")
async def two(shared_temporal: str) -> AsyncIterator[tuple[Stack, Stack]]:
    async with stack(shared_temporal) as first, stack(shared_temporal) as second:
        yield first, second


async def place_and_read(http: httpx.AsyncClient) -> httpx.Response:
    tenant = await onboard(http, "Deployed")
    order = {
        "OrderId": str(uuid.uuid4()),
        "CustomerName": "Grace Hopper",
        "OrderLines": [{"ProductCode": "COBOL", "Quantity": 1, "UnitPrice": "5.00"}],
    }
    placed = await http.post("/commands/PlaceOrder", headers=tenant.headers, json=order)
    assert placed.status_code == 200, placed.text
    return await http.get(
        "/queries/GetOrders",
        params={
            "CustomerName": "Grace Hopper",
            "ConsistentWith": placed.json()["ConsistencyToken"],
            "Timeout": "10",
        },
        headers=tenant.headers,
    )


async def test_two_deployments_on_one_temporal_server_each_project_their_own(
    two: tuple[Stack, Stack], shared_temporal: str
) -> None:
    first, second = two
    assert first.deployment != second.deployment
    reads = await asyncio.gather(place_and_read(first.http), place_and_read(second.http))
    for read in reads:
        assert read.status_code == 200, read.text
        assert [item["CustomerName"] for item in read.json()["Items"]] == ["Grace Hopper"]

    client = await Client.connect(shared_temporal)
    running = [w.id async for w in client.list_workflows("ExecutionStatus = 'Running'")]
    projectors = {
        d.name: sorted(i for i in running if d.owns(i)) for d in (first.deployment, second.deployment)
    }
    for deployment, ids in projectors.items():
        assert ids == [f"{deployment}-projector-{p}-main" for p in ("activities", "customers", "orders")]


async def test_a_worker_refuses_a_task_queue_another_deployment_serves(two: tuple[Stack, Stack]) -> None:
    first, second = two
    intruder = replace(second.settings, task_queue=first.deployment.name)
    with pytest.raises(ForeignDeployment) as refused:
        await asyncio.wait_for(run_worker(intruder), 30)
    message = str(refused.value)
    assert first.deployment.name in message and second.deployment.name in message
    assert "ERP_TASK_QUEUE" in message


async def test_an_activity_refuses_another_deployments_task(two: tuple[Stack, Stack]) -> None:
    first, second = two
    async with Container(first.settings, min_pool=1, max_pool=2).running() as container:
        activities = container.activities()
        environment = ActivityEnvironment()
        foreign = ProjectorInput("orders", "main", run_for_seconds=1, deployment=second.deployment.name)
        with pytest.raises(ApplicationError) as refused:
            await environment.run(activities.run_projector, foreign)
        assert not refused.value.non_retryable  # its own deployment's worker takes the retry
        assert second.deployment.name in str(refused.value)

        legacy = ProjectorInput("orders", "main", run_for_seconds=1)
        with pytest.raises(ApplicationError) as ended:
            await environment.run(activities.run_projector, legacy)
        assert ended.value.non_retryable  # started before deployment ids: its workflow ends
