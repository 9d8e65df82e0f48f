"""The bench's rebuild lines: how fast a new version of a read model is built, against Postgres's own
bulk-insert rate, and what a build costs the other accounts' notifications.

1. `million`: one account with 1,000,000 orders (written by COPY, as the store would have stored
   them), in a database of its own on the bench's Postgres; then a new version of the orders read
   model is built (`queries.blue_green`: prepare, the bulk pass in a child process as the worker
   runs it, catch-up, switch), timed whole.
   Beside it, the same Postgres's bulk-insert rate (`seed.bulk_insert_rate`), measured in the same
   run: the build writes one row per order, so the ratio says how much of Postgres's rate it gets.
   Both are measured once the server is quiet (`quiet_server`: the seeding checkpointed, and no
   autovacuum worker left from the bench's earlier phases).
2. `notifications_during_build`: a build of the orders read model of the bench's stack, started
   through the operator API and run by its worker, while one account sends one command at a time
   and times its notifications; p50 and p99 of those that were sent while the build ran.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
from litestar.channels import ChannelsPlugin

from commands.erp_model import UPCASTERS
from commands.store.feed import EventFeed
from erp.bench.phases import sample_latencies
from erp.bench.report import percentile
from erp.bench.seed import account_database, bulk_insert_rate, seed_orders
from erp.bench.stack import OPERATOR
from queries.blue_green import START, Build
from queries.build_process import bulk_pass_in_process
from queries.notifications import channel_for
from queries.registry import PROJECTIONS

MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class MillionBuilt:
    events: int
    seconds: float
    bulk_insert_rows_per_s: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds


async def million(database_url: str, events: int = MILLION) -> MillionBuilt:
    """Build a new version of the orders read model of one account with `events` orders, in a
    database of its own beside `database_url`'s (dropped afterwards)."""
    async with account_database(database_url, "rebuild") as (url, pool, account_id):
        await seed_orders(pool, account_id, events)
        await pool.execute("VACUUM ANALYZE events")  # as autovacuum would have, long before a rebuild
        await quiet_server(pool)
        bulk = await bulk_insert_rate(pool)
        started = time.perf_counter()
        build = await Build.prepare(pool, PROJECTIONS["orders"], EventFeed(UPCASTERS))
        # As the worker runs it: the bulk pass in a child process (`queries.build_process`).
        await bulk_pass_in_process(url, "orders", build.version, START, lambda _: None)
        await build.catch_up()
        await build.switch()
        seconds = time.perf_counter() - started
        built = await pool.fetchval("SELECT count(*) FROM rm_order WHERE account_id = $1", account_id)
        if built != events:
            raise RuntimeError(f"the build has {built} orders of {events}")
    return MillionBuilt(events, seconds, bulk)


_VACUUMING = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"


async def quiet_server(pool: asyncpg.Pool[Any], within: float = 120.0) -> None:
    """Until the server has written out the seeding (a checkpoint) and no autovacuum worker runs (the
    bench's earlier phases leave tables for it to vacuum, on the same 2 cores), at most `within`
    seconds: the bulk-insert rate and the build are then measured on the same quiet server."""
    await pool.execute("CHECKPOINT")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not await pool.fetchval(_VACUUMING):
            return
        await asyncio.sleep(0.5)


@dataclass(frozen=True, slots=True)
class DuringBuild:
    notifications: int
    p50_ms: float
    p99_ms: float
    events: int
    """Events the build replayed (the orders read model's head when it started)."""
    seconds: float
    """From the operator's request to the switch."""


async def notifications_during_build(
    session: aiohttp.ClientSession, base: str, channels: ChannelsPlugin, tenant: tuple[UUID, str]
) -> DuringBuild:
    """Start a build of the orders read model, and time one account's notifications until it is
    switched in."""
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    started = time.perf_counter()
    async with session.post(f"{base}/projections/orders/rebuild", headers=operator) as response:
        if response.status != 202:
            raise RuntimeError(f"the build did not start: {response.status} {await response.text()}")
    latencies: list[float] = []
    head = 0
    async with channels.start_subscription(channel_for(tenant[0])) as subscriber:
        while True:
            orders = await _orders(session, base, operator)
            building = orders.get("Building")
            head = max(head, building["Head"] if building else 0)
            phase = orders.get("Build", {}).get("Phase", "")
            if phase and not phase.startswith(("starting", "preparing", "building", "switching")):
                break
            _, notified = await sample_latencies(session, base, subscriber, tenant, 10, 1 / 50)
            latencies += notified
    seconds = time.perf_counter() - started
    return DuringBuild(
        len(latencies),
        statistics.median(latencies) * 1000 if latencies else float("nan"),
        percentile(latencies, 0.99) * 1000,
        head,
        seconds,
    )


async def _orders(session: aiohttp.ClientSession, base: str, operator: dict[str, str]) -> dict[str, Any]:
    async with session.get(f"{base}/projections", headers=operator) as response:
        found: list[dict[str, Any]] = await response.json()
    return next(p for p in found if p["Name"] == "orders")


async def wait_switched(session: aiohttp.ClientSession, base: str, within: float = 600) -> None:
    """Until the orders read model's latest build is live (or ended)."""
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        phase = (await _orders(session, base, operator)).get("Build", {}).get("Phase", "")
        if phase.startswith(("done", "aborted")):
            return
        await asyncio.sleep(0.5)
    raise RuntimeError("the build did not end")
