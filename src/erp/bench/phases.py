"""The bench's measured phases: commands over HTTP, appends straight through the store (with the
projector keeping up, in bulk, and paused then catching up), and command -> notification latency."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import statistics
import time
import uuid
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
from litestar.channels import ChannelsPlugin

from commands.store.event_store import CommandMetadata, PendingEvent, StreamWrite
from commands.store.wakeup import ProjectorWakeup
from core.settings import Settings
from erp.bench.load import order_body, run_for
from erp.bench.report import Results, percentile
from erp.bench.stack import Stack
from erp.bootstrap import Container
from queries.notifications import channel_for

_LAG = (
    "SELECT coalesce(sum(s.last_sequence - coalesce(c.position, 0)), 0) FROM stream_sequences s "
    "LEFT JOIN projection_checkpoints c ON c.projection = 'orders' "
    "AND c.account_id = s.account_id AND c.stream_type = s.stream_type"
)


async def http_commands(
    session: aiohttp.ClientSession,
    base: str,
    tenants: list[tuple[UUID, str]],
    seconds: float,
    results: Results,
    clients: int = 48,
) -> None:
    latencies: list[float] = []
    errors = 0

    async def step(n: int) -> None:
        nonlocal errors
        _, key = tenants[random.randrange(len(tenants))]
        started = time.perf_counter()
        async with session.post(
            f"{base}/commands/PlaceOrder",
            json=order_body(),
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            await response.read()
            if response.status == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    elapsed = await run_for(seconds, clients, step)
    results.http_commands = len(latencies)
    results.http_errors = errors
    results.http_commands_per_s = len(latencies) / elapsed
    results.http_latency_p50_ms = percentile(latencies, 0.50) * 1000
    results.http_latency_p99_ms = percentile(latencies, 0.99) * 1000


async def lag(pool: asyncpg.Pool[Any]) -> int:
    """Events the `orders` projection has still to apply, over every account."""
    return int(await pool.fetchval(_LAG))


async def wait_caught_up(pool: asyncpg.Pool[Any]) -> None:
    while await lag(pool) > 0:  # noqa: ASYNC110  (polling a database, not an in-process event)
        await asyncio.sleep(0.05)


async def store_appends(
    settings: Settings,
    accounts: list[UUID],
    seconds: float,
    events_per_append: int = 1,
    writers: int = 32,
    wait: bool = True,
) -> tuple[float, float, float]:
    """Append new orders straight through the store; returns (appends/s, events/s, projected events/s).

    With `events_per_append` > 1, each append places that many orders at once
    (one atomic multi-stream append, as a bulk import would).
    """
    async with Container(settings, min_pool=writers, max_pool=writers).running() as container:
        pool, store = container.databases.main, container.store
        wakeup = ProjectorWakeup(pool)
        appends = 0

        async def step(n: int) -> None:
            nonlocal appends
            account_id = random.choice(accounts)
            writes = []
            for _ in range(events_per_append):
                order_id = uuid.uuid4()
                payload = {**order_body(), "OrderId": str(order_id), "Total": "20.00"}
                writes.append(
                    StreamWrite(f"Order-{order_id}", "Order", 0, [PendingEvent("OrderPlaced", payload)])
                )
            command_id = uuid.uuid4()
            await store.append(pool, account_id, writes, CommandMetadata(command_id, command_id, command_id))
            wakeup.poke(["Order"])
            appends += 1

        try:
            started = time.monotonic()
            elapsed = await run_for(seconds, writers, step)
            if wait:
                await wait_caught_up(pool)
            events = appends * events_per_append
            return appends / elapsed, events / elapsed, events / (time.monotonic() - started)
        finally:
            await wakeup.close()


async def appends_then_catch_up(stack: Stack, accounts: list[UUID], seconds: float) -> tuple[float, float]:
    """Appends with the worker stopped (SIGSTOP), then the projection catching up on the backlog.

    Returns (events appended/s, events projected/s while catching up): the store and the
    projector each on their own, rather than sharing the two cores.
    """
    stack.worker.send_signal(signal.SIGSTOP)
    try:
        _, appended_per_s, _ = await store_appends(stack.settings, accounts, seconds, wait=False)
    finally:
        stack.worker.send_signal(signal.SIGCONT)
    pool = stack.container.databases.main
    backlog = await lag(pool)
    started = time.monotonic()
    await wait_caught_up(pool)
    return appended_per_s, backlog / (time.monotonic() - started)


async def notification_latency(
    session: aiohttp.ClientSession,
    base: str,
    channels: ChannelsPlugin,
    tenant: tuple[UUID, str],
    results: Results,
    samples: int = 300,
) -> None:
    """One command at a time: from sending it to hearing the notification that covers its position
    (through a channels plugin built as the API's, so on one Redis server or a cluster alike)."""
    account_id, key = tenant
    latencies: list[float] = []
    async with channels, channels.start_subscription(channel_for(account_id)) as subscriber:
        notes = subscriber.iter_events()
        for _ in range(samples):
            started = time.perf_counter()
            async with session.post(
                f"{base}/commands/PlaceOrder",
                json=order_body(),
                headers={"Authorization": f"Bearer {key}"},
            ) as response:
                position = (await response.json())["Positions"]["Order"]
            while True:
                try:
                    note = await asyncio.wait_for(anext(notes), 5)
                except TimeoutError:
                    raise RuntimeError("no notification within 5 s") from None
                if json.loads(note)["Position"] >= position:
                    break
            latencies.append(time.perf_counter() - started)
    results.latency_p50_ms = statistics.median(latencies) * 1000
    results.latency_p99_ms = percentile(latencies, 0.99) * 1000
