"""The rebuild activity: its heartbeats say how far it is, and a retried attempt goes on after the
last account it finished (Temporal hands the last heartbeat back), against a database of its own."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, replace
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from temporalio.testing import ActivityEnvironment

from commands.service import CommandService
from commands.store.event_store import EventStore
from commands.store.feed import EventFeed
from core.redis_client import redis_client
from core.settings import Settings
from core.temporal import TemporalGateway
from erp.devserver import drop_database
from queries.notifications import Notifier
from tenancy.catalog import AccountCatalog
from tenancy.moving import AccountMover
from tenancy.onboarding import Onboarding
from tenancy.routing import Databases
from tests.conftest import fresh_database, make_account
from workflows.activities import ErpActivities
from workflows.messages import RebuildProgress, RebuildStep
from workflows.starters import TemporalOnboarding


@pytest.fixture
async def own(settings: Settings) -> AsyncIterator[tuple[ErpActivities, asyncpg.Pool[Any]]]:
    """Activities over a fresh database, so `all accounts` means the two the test makes."""
    url = await fresh_database()
    scoped = replace(settings, database_url=url)
    databases = await Databases(scoped, min_size=1, max_size=4).open()
    client = redis_client(settings.redis_url)
    catalog = AccountCatalog(databases)
    deployment = await catalog.deployment()
    gateway = TemporalGateway(scoped)
    gateway.identify(deployment)
    onboarding = Onboarding(catalog, databases, TemporalOnboarding(gateway))
    try:
        mover = AccountMover(databases, catalog)
        yield (
            ErpActivities(databases, EventFeed(), Notifier(client), onboarding, mover, deployment),
            databases.main,
        )
    finally:
        await client.aclose()
        await databases.close()
        await drop_database(url)


def place_order_body() -> bytes:
    line = {"ProductCode": "P", "Quantity": 1, "UnitPrice": "2.50"}
    order = {"OrderId": str(uuid.uuid4()), "CustomerName": "Ada", "OrderLines": [line]}
    return json.dumps(order).encode()


async def orders_of(pool: asyncpg.Pool[Any], account_id: UUID) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM rm_order WHERE account_id = $1", account_id)
    return count


async def test_a_retried_rebuild_goes_on_after_the_last_account_done(
    own: tuple[ErpActivities, asyncpg.Pool[Any]],
) -> None:
    activities, pool = own
    first, second = sorted([await make_account(pool), await make_account(pool)], key=str)
    service = CommandService(pool, EventStore())
    for account_id, orders in ((first, 3), (second, 4)):
        for _ in range(orders):
            await service.execute(account_id, service.parse("PlaceOrder", place_order_body()))

    beats: list[RebuildProgress] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(RebuildProgress(**details[0]))
    result = await env.run(
        activities.rebuild_projection, RebuildStep("orders", "main", deployment=activities.deployment.name)
    )
    assert (result.events_applied, await orders_of(pool, first), await orders_of(pool, second)) == (7, 3, 4)
    assert beats[-1].accounts_done == 2 and beats[-1].replayed == 7

    # An attempt that died inside the second account: its last heartbeat names the first as done.
    await pool.execute("DELETE FROM rm_order WHERE account_id = ANY($1)", [first, second])
    died = RebuildProgress(2, 1, 3, 1, last_account=str(first), account_events=2)
    env = ActivityEnvironment()
    env.info = replace(env.info, heartbeat_details=[asdict(died)])
    result = await env.run(
        activities.rebuild_projection, RebuildStep("orders", "main", deployment=activities.deployment.name)
    )
    assert await orders_of(pool, first) == 0, "the account done before the retry was replayed again"
    assert await orders_of(pool, second) == 4
    # The partial account's events are not counted twice.
    assert result.events_applied == 3 + 4
