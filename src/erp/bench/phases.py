"""The bench's measured phases: commands over HTTP, appends straight through the store (with the
projector keeping up, in bulk, and paused then catching up), and command -> notification latency."""

from __future__ import annotations

import asyncio
import json
import math
import random
import signal
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
from litestar.channels import ChannelsPlugin

from commands.store.event_store import CommandMetadata, PendingEvent, StreamWrite
from commands.store.wakeup import ProjectorWakeup
from core.settings import Settings
from erp.bench.load import order_body, run_for
from erp.bench.neighbour import Neighbour, Switch
from erp.bench.report import Results, percentile
from erp.bench.stack import Stack
from erp.bootstrap import Container
from queries.notifications import channel_for
from queries.projector import Checkpoints
from queries.projector.checkpoints import Pair


@dataclass
class Window:
    """PlaceOrders sent for a while: each 200's answer time, the other answers, the seconds taken,
    and the last position each (account, Order) reached."""

    latencies: list[float]
    errors: int
    seconds: float
    heads: dict[Pair, int]


async def place_orders(
    session: aiohttp.ClientSession,
    base: str,
    tenants: list[tuple[UUID, str]],
    seconds: float,
    clients: int = 48,
) -> Window:
    """PlaceOrder over HTTP to `base` from `clients` concurrent clients for `seconds`, each to a
    random account of `tenants`. The bench's one load of PlaceOrders: the API, the bare app
    (`erp.bench.bare`) and one account alone are all sent it."""
    latencies: list[float] = []
    errors = 0
    heads: dict[Pair, int] = {}

    async def step(n: int) -> None:
        nonlocal errors
        account_id, key = tenants[random.randrange(len(tenants))]
        started = time.perf_counter()
        async with session.post(
            f"{base}/commands/PlaceOrder",
            json=order_body(),
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            body = await response.read()
            if response.status == 200:
                latencies.append(time.perf_counter() - started)
                pair = (account_id, "Order")
                heads[pair] = max(heads.get(pair, 0), json.loads(body)["Positions"]["Order"])
            else:
                errors += 1

    elapsed = await run_for(seconds, clients, step)
    return Window(latencies, errors, elapsed, heads)


async def http_commands(
    session: aiohttp.ClientSession,
    base: str,
    tenants: list[tuple[UUID, str]],
    seconds: float,
    results: Results,
    clients: int = 48,
) -> dict[Pair, int]:
    """PlaceOrder over HTTP from `clients` concurrent clients, each to a random account; the last
    position each (account, Order) reached."""
    window = await place_orders(session, base, tenants, seconds, clients)
    latencies = window.latencies
    results.http_commands = len(latencies)
    results.http_errors = window.errors
    results.http_commands_per_s = len(latencies) / window.seconds
    results.http_latency_p50_ms = percentile(latencies, 0.50) * 1000
    results.http_latency_p99_ms = percentile(latencies, 0.99) * 1000
    return window.heads


async def each_once(
    session: aiohttp.ClientSession, base: str, tenants: list[tuple[UUID, str]], clients: int = 48
) -> dict[Pair, int]:
    """One PlaceOrder of every account (48 at a time): what a steady load has done before it is
    measured (each account's key and definitions cached); the position each reached."""
    limit = asyncio.Semaphore(clients)
    heads: dict[Pair, int] = {}

    async def one(account_id: UUID, key: str) -> None:
        async with (
            limit,
            session.post(
                f"{base}/commands/PlaceOrder", json=order_body(), headers={"Authorization": f"Bearer {key}"}
            ) as response,
        ):
            body = await response.json()
            if response.status != 200:
                raise RuntimeError(f"PlaceOrder answered {response.status}: {body}")
            heads[(account_id, "Order")] = body["Positions"]["Order"]

    await asyncio.gather(*(one(account_id, key) for account_id, key in tenants))
    return heads


LOOK = 64
"""Pairs one look of `wait_projected` reads at most."""


async def wait_projected(pool: asyncpg.Pool[Any], heads: dict[Pair, int]) -> None:
    """Until the `orders` projection has applied each (account, stream type) up to its head.

    Each look reads at most `LOOK` pairs by key, the first still waiting: a look at every pair
    every 50 ms cost the database more with every account (10,000 pairs a look), and slowed the
    projector it was timing. The pairs it finds caught up are not looked at again.
    """
    checkpoints = Checkpoints("orders", ("Order",))
    waiting = list(heads)
    while waiting:
        front = waiting[:LOOK]
        behind = await checkpoints.behind_among(pool, front)
        waiting = [pair for pair in front if pair in behind] + waiting[LOOK:]
        if behind:
            await asyncio.sleep(0.05)


@dataclass
class Appended:
    appends_per_s: float
    events_per_s: float
    projected_per_s: float
    """Events appended over the time until the projector had applied them (0 if not waited for)."""
    heads: dict[Pair, int]
    """The last SequenceNumber appended per (account, stream type)."""


async def store_appends(
    settings: Settings,
    accounts: list[UUID],
    seconds: float,
    events_per_append: int = 1,
    writers: int = 32,
    wait: bool = True,
) -> Appended:
    """Append new orders straight through the store, over all `accounts`.

    With `events_per_append` > 1, each append places that many orders at once
    (one atomic multi-stream append, as a bulk import would).
    """
    async with Container(settings, min_pool=writers, max_pool=writers).running() as container:
        pool, store = container.databases.main, container.store
        wakeup = ProjectorWakeup(pool)
        appends = 0
        heads: dict[Pair, int] = {}

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
            metadata = CommandMetadata(command_id, command_id, command_id)
            appended = await store.append(pool, account_id, writes, metadata)
            wakeup.poke(["Order"])
            pair = (account_id, "Order")
            heads[pair] = max(heads.get(pair, 0), appended.positions["Order"])
            appends += 1

        try:
            started = time.monotonic()
            elapsed = await run_for(seconds, writers, step)
            events = appends * events_per_append
            projected = 0.0
            if wait:
                await wait_projected(pool, heads)
                projected = events / (time.monotonic() - started)
            return Appended(appends / elapsed, events / elapsed, projected, heads)
        finally:
            await wakeup.close()


async def appends_then_catch_up(stack: Stack, accounts: list[UUID], seconds: float) -> tuple[float, float]:
    """Appends with the worker stopped (SIGSTOP), then the projection catching up on the backlog.

    Returns (events appended/s, events projected/s while catching up): the store and the
    projector each on their own, rather than sharing the two cores.
    """
    stack.worker.send_signal(signal.SIGSTOP)
    try:
        appended = await store_appends(stack.settings, accounts, seconds, wait=False)
    finally:
        stack.worker.send_signal(signal.SIGCONT)
    pool = stack.container.databases.main
    pairs = list(appended.heads)
    backlog = sum((await Checkpoints("orders", ("Order",)).behind_among(pool, pairs)).values())
    started = time.monotonic()
    await wait_projected(pool, appended.heads)
    return appended.events_per_s, backlog / (time.monotonic() - started)


async def sample_latencies(
    session: aiohttp.ClientSession,
    base: str,
    subscriber: Any,
    tenant: tuple[UUID, str],
    samples: int,
    interval: float = 0.0,
) -> tuple[list[float], list[float]]:
    """One command at a time, each `interval` seconds after the last one's start at the earliest:
    each one's answer time, and its time until the notification that covers its position arrives
    on `subscriber` (a subscription to the account's channel)."""
    _, key = tenant
    answers: list[float] = []
    notified: list[float] = []
    notes = subscriber.iter_events()
    started = -math.inf
    while len(answers) < samples:
        await asyncio.sleep(started + interval - time.perf_counter())
        started = time.perf_counter()
        async with session.post(
            f"{base}/commands/PlaceOrder",
            json=order_body(),
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            body = await response.json()
            if response.status == 429:  # faster than its rate limit: wait as told, not counted
                await asyncio.sleep(float(response.headers["Retry-After"]))
                continue
            if response.status != 200:
                raise RuntimeError(f"PlaceOrder answered {response.status}: {body}")
            position = body["Positions"]["Order"]
        answers.append(time.perf_counter() - started)
        while True:
            try:
                note = await asyncio.wait_for(anext(notes), 5)
            except TimeoutError:
                raise RuntimeError("no notification within 5 s") from None
            if json.loads(note)["Position"] >= position:
                break
        notified.append(time.perf_counter() - started)
    return answers, notified


async def notification_latency(
    session: aiohttp.ClientSession,
    base: str,
    channels: ChannelsPlugin,
    tenant: tuple[UUID, str],
    results: Results,
    samples: int = 300,
) -> None:
    """One command at a time, 50 a second (within the account's rate limit): from sending it to
    hearing the notification that covers its position (through a channels plugin built as the
    API's, so on one Redis server or a cluster alike)."""
    async with channels.start_subscription(channel_for(tenant[0])) as subscriber:
        _, latencies = await sample_latencies(session, base, subscriber, tenant, samples, 1 / 50)
    results.latency_p50_ms = statistics.median(latencies) * 1000
    results.latency_p99_ms = percentile(latencies, 0.99) * 1000


async def noisy_neighbour(
    session: aiohttp.ClientSession,
    base: str,
    channels: ChannelsPlugin,
    quiet: tuple[UUID, str],
    noisy: tuple[UUID, str],
    results: Results,
    samples: int = 200,
    rounds: int = 5,
    pace: float = 50.0,
    connections: int = 64,
) -> None:
    """A quiet account's command and notification p99, alone and while another account floods the
    API with `connections` connections (its commands beyond its rate limit are answered 429). The
    quiet account sends `pace` commands a second, one at a time: well within its limit. Alone and
    flooded alternate (`alternate`) for `rounds` rounds of `samples` commands each."""
    async with channels.start_subscription(channel_for(quiet[0])) as subscriber:
        with Neighbour(flood, (base, noisy[1]), connections) as neighbour:
            seen = await alternate(
                rounds,
                lambda: sample_latencies(session, base, subscriber, quiet, samples, 1 / pace),
                neighbour,
            )
    results.quiet_command_p99_ms = percentile(seen.calm[0], 0.99) * 1000
    results.quiet_notification_p99_ms = percentile(seen.calm[1], 0.99) * 1000
    results.flooded_command_p99_ms = percentile(seen.loud[0], 0.99) * 1000
    results.flooded_notification_p99_ms = percentile(seen.loud[1], 0.99) * 1000
    results.flood_accepted_per_s = seen.grew["200"] / seen.seconds
    results.flood_limited_per_s = seen.grew["429"] / seen.seconds
    results.flood_other = neighbour.counts()["other"]
    results.flood_failed = neighbour.counts()["failed"]


async def flood(session: aiohttp.ClientSession, switch: Switch, target: tuple[str, str], _: int) -> None:
    """The noisy neighbour's connection: small PlaceOrders as fast as they are answered."""
    base, key = target
    while switch.on:
        try:
            async with session.post(
                f"{base}/commands/PlaceOrder", json=order_body(), headers={"Authorization": f"Bearer {key}"}
            ) as response:
                switch.count(response.status, len(await response.read()))
        except aiohttp.ClientError:  # a kept-alive connection the server closed meanwhile
            await switch.failed()


Samples = tuple[list[float], list[float]]
"""Two figures of each sample, in seconds (a command's answer time, and its notification's or its
read's)."""


@dataclass
class Alternated:
    """A measured account's samples alone (`calm`) and under a load (`loud`), the seconds it was
    sampled under the load, and how much the load's counters grew meanwhile."""

    calm: Samples = field(default_factory=lambda: ([], []))
    loud: Samples = field(default_factory=lambda: ([], []))
    seconds: float = 0.0
    grew: Counter[str] = field(default_factory=Counter)


async def alternate(
    rounds: int, sample: Callable[[], Awaitable[Samples]], neighbour: Neighbour
) -> Alternated:
    """`rounds` times: `sample` alone, then with the neighbour's load on for a second first (past
    its burst) and while `sample` runs again. Each figure is then taken over all of its rounds: a
    p99 of a few hundred samples of a few milliseconds moves by a quarter with one slow sample, and
    the machine's own drift over the line falls on both sides."""
    seen = Alternated()
    for _ in range(rounds):
        for kept, taken in zip(seen.calm, await sample(), strict=True):
            kept.extend(taken)
        neighbour.start()
        await asyncio.sleep(1.0)
        before = neighbour.counts()
        started = time.perf_counter()
        loud = await sample()
        seen.seconds += time.perf_counter() - started
        seen.grew.update(neighbour.counts() - before)
        for kept, taken in zip(seen.loud, loud, strict=True):
            kept.extend(taken)
        await neighbour.stop()
    return seen


HEAVY_CUSTOMER = "Heavy Customer"
"""The customer of the heavy neighbour's orders, which its reads ask for."""


def big_order_body(lines: int) -> dict[str, Any]:
    """An order with `lines` order lines: the heaviest body a tenant may send."""
    body = order_body()
    body["CustomerName"] = HEAVY_CUSTOMER
    body["OrderLines"] = [
        {"ProductCode": f"P-{n:05d}", "Quantity": 1 + n % 7, "UnitPrice": "12.34"} for n in range(lines)
    ]
    return body


async def light_samples(
    session: aiohttp.ClientSession, base: str, tenant: tuple[UUID, str], samples: int, interval: float
) -> tuple[list[float], list[float]]:
    """One small PlaceOrder at a time, each `interval` seconds after the last one's start at the
    earliest, and each followed by a GetOrders ConsistentWith its answer: the command's answer
    time, and the read's."""
    headers = {"Authorization": f"Bearer {tenant[1]}"}
    commands: list[float] = []
    reads: list[float] = []
    began = -math.inf
    while len(commands) < samples:
        await asyncio.sleep(began + interval - time.perf_counter())
        began = started = time.perf_counter()
        order = order_body()
        async with session.post(f"{base}/commands/PlaceOrder", json=order, headers=headers) as response:
            body = await response.json()
            if response.status == 429:
                await asyncio.sleep(float(response.headers["Retry-After"]))
                continue
            if response.status != 200:
                raise RuntimeError(f"PlaceOrder answered {response.status}: {body}")
        commands.append(time.perf_counter() - started)
        started = time.perf_counter()
        params = {
            "CustomerName": order["CustomerName"],
            "ConsistentWith": body["ConsistencyToken"],
            "Limit": "1",
        }
        async with session.get(f"{base}/queries/GetOrders", params=params, headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"GetOrders answered {response.status}: {await response.text()}")
        reads.append(time.perf_counter() - started)
    return commands, reads


async def heavy_neighbour(
    session: aiohttp.ClientSession,
    base: str,
    light: tuple[UUID, str],
    heavy: tuple[UUID, str],
    results: Results,
    *,
    lines: int,
    samples: int = 200,
    rounds: int = 5,
    pace: float = 50.0,
    writers: int = 8,
    readers: int = 8,
) -> None:
    """A light account's command and ConsistentWith read p99, alone and while another account sends
    the biggest orders it may (`lines` lines each) from `writers` connections and reads its orders
    a whole page at a time from `readers`, each waiting as a 429 says. The light account sends
    `pace` commands a second, each followed by its read; alone and loaded alternate (`alternate`)
    for `rounds` rounds of `samples` each."""
    headers = {"Authorization": f"Bearer {heavy[1]}"}
    placed = 0
    while placed < 20:  # something heavy to read from the start
        async with session.post(
            f"{base}/commands/PlaceOrder", json=big_order_body(lines), headers=headers
        ) as response:
            if response.status == 429:
                await asyncio.sleep(float(response.headers["Retry-After"]))
            elif response.status != 200:
                raise RuntimeError(f"a big PlaceOrder answered {response.status}: {await response.text()}")
            else:
                placed += 1
    with Neighbour(heavy_load, (base, heavy[1], lines, writers), writers + readers) as neighbour:
        seen = await alternate(
            rounds, lambda: light_samples(session, base, light, samples, 1 / pace), neighbour
        )
    results.light_command_p99_ms = percentile(seen.calm[0], 0.99) * 1000
    results.light_read_p99_ms = percentile(seen.calm[1], 0.99) * 1000
    results.heavy_command_p99_ms = percentile(seen.loud[0], 0.99) * 1000
    results.heavy_read_p99_ms = percentile(seen.loud[1], 0.99) * 1000
    answers = {status: n for status, n in seen.grew.items() if status != "bytes" and n}
    results.heavy_answers_per_s = {status: n / seen.seconds for status, n in sorted(answers.items())}
    results.heavy_mb_read_per_s = seen.grew["bytes"] / seen.seconds / 2**20


async def heavy_load(
    session: aiohttp.ClientSession, switch: Switch, target: tuple[str, str, int, int], n: int
) -> None:
    """The heavy neighbour's connection n: the first `writers` send orders of `lines` lines, the
    rest read its orders a whole page at a time; each waits as a 429 says."""
    base, key, lines, writers = target
    headers = {"Authorization": f"Bearer {key}"}
    writing = n < writers
    while switch.on:
        if writing:
            request = session.post(f"{base}/commands/PlaceOrder", json=big_order_body(lines), headers=headers)
        else:
            params = {"CustomerName": HEAVY_CUSTOMER, "Limit": "1000"}
            request = session.get(f"{base}/queries/GetOrders", params=params, headers=headers)
        try:
            async with request as response:
                body = await response.read()
                switch.count(response.status, 0 if writing else len(body))
                if response.status == 429:
                    await asyncio.sleep(float(response.headers["Retry-After"]))
        except aiohttp.ClientError:  # a kept-alive connection the server closed meanwhile
            await switch.failed()
