"""`erp bench`: throughput and latency on this machine, printed with ratios to the targets.

It starts its own database, Temporal dev server, worker and API (as separate
processes, as in production), onboards accounts over HTTP, warms the API up with
the same load for a fifth of a phase (at least 2 s, not measured), then measures:

1. PlaceOrder commands/s over HTTP, with concurrent clients over all accounts;
2. command -> notification latency: one command at a time, from sending the HTTP request
   to receiving the account's Redis notification that covers its position;
3. events/s appended through the event store directly, concurrent writers over all accounts:
   with the projector keeping up, ten orders per append, and with the worker stopped (the
   store alone), then how fast the projector catches up.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import psutil
import redis.asyncio as redis
from rich.console import Console
from rich.table import Table

from commands.event_store import CommandMetadata, EventStore, PendingEvent, StreamWrite
from commands.wakeup import ProjectorWakeup
from erp.db import create_pool
from erp.devserver import create_database, drop_database, free_ports, start_temporal, with_database
from erp.migrate import upgrade_async
from erp.settings import Settings
from queries.notifications import channel_for

console = Console(width=120)
OPERATOR = "bench-operator-token"
BULK = 10
"""Orders per append in the bulk phase."""
PAGE = 20
"""Items per query page in the soak, as a screen would show them."""


@dataclass
class Results:
    machine: str
    accounts: int
    http_commands: int = 0
    http_errors: int = 0
    http_commands_per_s: float = 0.0
    http_latency_p50_ms: float = 0.0
    http_latency_p99_ms: float = 0.0
    appends_per_s: float = 0.0
    appended_events_per_s: float = 0.0
    projected_events_per_s: float = 0.0
    bulk_appended_events_per_s: float = 0.0
    bulk_projected_events_per_s: float = 0.0
    paused_appended_events_per_s: float = 0.0
    catch_up_events_per_s: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    api_rss_mb: float = 0.0
    worker_rss_mb: float = 0.0
    notes: list[str] = field(default_factory=list)


def machine() -> str:
    memory = psutil.virtual_memory().total / 2**30
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {memory:.0f} GiB, Python {platform.python_version()}"
    )


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def order_body() -> dict[str, Any]:
    return {
        "OrderId": str(uuid.uuid4()),
        "CustomerName": random.choice(["Linus Torvalds", "Ada Lovelace", "Grace Hopper"]),
        "OrderLines": [{"ProductCode": "KB-1", "Quantity": 2, "UnitPrice": "10.00"}],
    }


class Stack:
    """Database, Temporal, worker and API processes of the bench's own."""

    def __init__(self, api_workers: int) -> None:
        self.api_workers = api_workers
        self.database_url = with_database(
            os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
            f"erp_bench_{uuid.uuid4().hex[:10]}",
        )
        temporal_port, self.port = free_ports(2)
        self.temporal_address = f"127.0.0.1:{temporal_port}"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs = Path(tempfile.mkdtemp(prefix="erp-bench-logs-"))
        """The worker's and the API's log lines (JSON), kept after the bench, out of its table."""
        self.settings = Settings(
            database_url=self.database_url,
            temporal_address=self.temporal_address,
            task_queue="erp-bench",
            operator_token=OPERATOR,
            http_port=self.port,
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "TEMPORAL_ADDRESS": self.temporal_address,
            "ERP_TASK_QUEUE": "erp-bench",
            "ERP_OPERATOR_TOKEN": OPERATOR,
            "ERP_HTTP_PORT": str(self.port),
            "ERP_LOG_LEVEL": "WARNING",
        }
        erp = str(Path(sys.executable).parent / "erp")
        with (self.logs / f"{args[0]}.log").open("ab") as log:
            process = subprocess.Popen([erp, *args], env=env, stdout=subprocess.DEVNULL, stderr=log)
        self.processes.append(process)
        return process

    async def start(self) -> None:
        await create_database(self.database_url)
        await upgrade_async(self.settings)
        self.processes.append(start_temporal(self.temporal_address))
        self.worker = self._spawn("worker")
        self.api = self._spawn("api", "--workers", str(self.api_workers))
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                try:
                    async with session.get(f"{self.base}/health") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("the API did not become healthy within 30 s")

    def rss_mb(self, process: subprocess.Popen[bytes]) -> float:
        """Resident memory of a process and its children (the API's worker processes)."""
        parent = psutil.Process(process.pid)
        processes = [parent, *parent.children(recursive=True)]
        return sum(p.memory_info().rss for p in processes) / 2**20

    async def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        await drop_database(self.database_url)


async def onboard(session: aiohttp.ClientSession, base: str, count: int) -> list[tuple[UUID, str]]:
    limit = asyncio.Semaphore(8)

    async def one(i: int) -> tuple[UUID, str]:
        async with (
            limit,
            session.post(
                f"{base}/accounts",
                json={"Name": f"Bench {i}"},
                headers={"Authorization": f"Bearer {OPERATOR}"},
            ) as response,
        ):
            body = await response.json()
            if response.status != 201:
                raise RuntimeError(f"onboarding failed: {response.status} {body}")
            return UUID(body["AccountId"]), body["ApiKey"]

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def run_for(seconds: float, workers: int, step: Callable[[int], Awaitable[None]]) -> float:
    """Run `step` in `workers` concurrent loops for `seconds`; returns the elapsed time."""
    deadline = time.monotonic() + seconds
    started = time.monotonic()

    async def loop(n: int) -> None:
        while time.monotonic() < deadline:
            await step(n)

    await asyncio.gather(*(loop(n) for n in range(workers)))
    return time.monotonic() - started


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


async def lag(settings: Settings) -> int:
    pool = await create_pool(settings, min_size=1, max_size=1)
    try:
        value = await pool.fetchval(
            "SELECT coalesce(sum(s.last_sequence - coalesce(c.position, 0)), 0) FROM stream_sequences s "
            "LEFT JOIN projection_checkpoints c ON c.projection = 'orders' "
            "AND c.account_id = s.account_id AND c.stream_type = s.stream_type"
        )
        return int(value)
    finally:
        await pool.close()


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
    pool = await create_pool(settings, min_size=writers, max_size=writers)
    store = EventStore()
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
            await wait_caught_up(settings)
        events = appends * events_per_append
        return appends / elapsed, events / elapsed, events / (time.monotonic() - started)
    finally:
        await wakeup.close()
        await pool.close()


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
    backlog = await lag(stack.settings)
    started = time.monotonic()
    await wait_caught_up(stack.settings)
    return appended_per_s, backlog / (time.monotonic() - started)


async def notification_latency(
    session: aiohttp.ClientSession,
    base: str,
    settings: Settings,
    tenant: tuple[UUID, str],
    results: Results,
    samples: int = 300,
) -> None:
    account_id, key = tenant
    client = redis.from_url(settings.redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel_for(account_id))
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    latencies: list[float] = []
    try:
        for _ in range(samples):
            started = time.perf_counter()
            async with session.post(
                f"{base}/commands/PlaceOrder",
                json=order_body(),
                headers={"Authorization": f"Bearer {key}"},
            ) as response:
                position = (await response.json())["Positions"]["Order"]
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                if message is None:
                    raise RuntimeError("no notification within 5 s")
                if json.loads(message["data"])["Position"] >= position:
                    break
            latencies.append(time.perf_counter() - started)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()
    results.latency_p50_ms = statistics.median(latencies) * 1000
    results.latency_p99_ms = percentile(latencies, 0.99) * 1000


def ratio(value: float, other: float | None, higher_is_better: bool) -> str:
    """How many times better than `other` (above 1 is better), or blank."""
    if other is None or value != value or value == 0:
        return ""
    return f"{(value / other if higher_is_better else other / value):.2f}x"


async def wait_caught_up(settings: Settings) -> None:
    while await lag(settings) > 0:  # noqa: ASYNC110  (polling a database, not an in-process event)
        await asyncio.sleep(0.05)


def report(results: Results) -> None:
    table = Table(title=f"erp bench — {results.machine}, {results.accounts} accounts")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("vs target", justify="right")
    table.add_column("vs reference library", justify="right")
    rows = [
        ("PlaceOrder over HTTP, commands/s", results.http_commands_per_s, 1000.0, True, 915.0),
        ("  HTTP latency p50 ms (under load)", results.http_latency_p50_ms, None, False, None),
        ("  HTTP latency p99 ms (under load)", results.http_latency_p99_ms, None, False, None),
        (
            "events appended/s, 1 per append (store, 32 writers)",
            results.appended_events_per_s,
            5000.0,
            True,
            915.0,
        ),
        ("  events projected/s meanwhile", results.projected_events_per_s, None, True, 1246.0),
        (f"events appended/s, {BULK} per append", results.bulk_appended_events_per_s, 5000.0, True, None),
        ("  events projected/s meanwhile", results.bulk_projected_events_per_s, None, True, 1246.0),
        (
            "events appended/s, 1 per append, projector paused",
            results.paused_appended_events_per_s,
            5000.0,
            True,
            915.0,
        ),
        ("  then events projected/s catching up", results.catch_up_events_per_s, None, True, 1246.0),
        ("command -> notification p50 ms", results.latency_p50_ms, 10.0, False, 104.0),
        ("command -> notification p99 ms", results.latency_p99_ms, 50.0, False, None),
    ]
    for name, value, target, higher_is_better, reference in rows:
        table.add_row(
            name,
            f"{value:,.1f}",
            "" if target is None else f"{target:,.0f}",
            ratio(value, target, higher_is_better),
            ratio(value, reference, higher_is_better),
        )
    console.print(table)
    console.print(
        f"HTTP commands: {results.http_commands} ok, {results.http_errors} errors; "
        f"RSS: API {results.api_rss_mb:.0f} MB, worker {results.worker_rss_mb:.0f} MB"
    )


async def run_bench(
    seconds: float = 10.0, accounts: int = 100, json_path: str | None = None, api_workers: int = 1
) -> Results:
    results = Results(machine=machine(), accounts=accounts)
    stack = Stack(api_workers)
    console.print(
        f"starting database, Temporal, worker and API (port {stack.port}; logs in {stack.logs}) ..."
    )
    await stack.start()
    try:
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector) as session:
            console.print(f"onboarding {accounts} accounts ...")
            tenants = await onboard(session, stack.base, accounts)
            warm_up = max(2.0, seconds / 5)
            console.print(f"warming up (caches, pools, prepared statements) for {warm_up:g} s ...")
            await http_commands(session, stack.base, tenants, warm_up, Results(machine="", accounts=accounts))
            await wait_caught_up(stack.settings)
            console.print(f"PlaceOrder over HTTP for {seconds:g} s ...")
            await http_commands(session, stack.base, tenants, seconds, results)
            await wait_caught_up(stack.settings)
            console.print("command -> notification latency ...")
            await notification_latency(session, stack.base, stack.settings, tenants[0], results)
            account_ids = [a for a, _ in tenants]
            console.print(f"appending through the store, one event per append, for {seconds:g} s ...")
            (
                results.appends_per_s,
                results.appended_events_per_s,
                results.projected_events_per_s,
            ) = await store_appends(stack.settings, account_ids, seconds)
            console.print(f"appending through the store, {BULK} orders per append, for {seconds:g} s ...")
            _, results.bulk_appended_events_per_s, results.bulk_projected_events_per_s = await store_appends(
                stack.settings, account_ids, seconds, events_per_append=BULK
            )
            console.print(f"appending, one event per append, projector paused, for {seconds:g} s ...")
            (
                results.paused_appended_events_per_s,
                results.catch_up_events_per_s,
            ) = await appends_then_catch_up(stack, account_ids, seconds)
            results.api_rss_mb = stack.rss_mb(stack.api)
            results.worker_rss_mb = stack.rss_mb(stack.worker)
    finally:
        await stack.stop()
    report(results)
    if json_path:
        await asyncio.to_thread(Path(json_path).write_text, json.dumps(asdict(results), indent=2))
    return results


@dataclass
class SoakWindow:
    at_s: float
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    api_rss_mb: float
    worker_rss_mb: float


async def run_soak(
    minutes: float, rate: float | None = None, accounts: int = 50, json_path: str | None = None
) -> list[SoakWindow]:
    """Hold a mixed load (orders placed and cancelled, queries) at `rate` requests/s for `minutes`.

    Without a rate, the mix's peak is measured first (64 clients as fast as they go, 20 s) and
    the soak runs at half of it.

    Prints a line every 10 s (requests, errors, latency, memory of API and worker) and a summary
    with the memory growth from the first minute to the end.
    """
    stack = Stack(1)
    await stack.start()
    windows: list[SoakWindow] = []
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
            tenants = await onboard(session, stack.base, accounts)
            placed: dict[str, list[str]] = {key: [] for _, key in tenants}
            latencies: list[float] = []
            errors = 0
            requests = 0
            limit = asyncio.Semaphore(256)

            async def one() -> None:
                nonlocal errors, requests
                _, key = random.choice(tenants)
                headers = {"Authorization": f"Bearer {key}"}
                roll = random.random()
                started = time.perf_counter()
                async with limit:
                    placing: str | None = None
                    if roll < 0.6 or not placed[key]:
                        body = order_body()
                        method, url, payload = "POST", "/commands/PlaceOrder", body
                        placing = body["OrderId"]
                    elif roll < 0.75:
                        order_id = placed[key].pop(random.randrange(len(placed[key])))
                        method, url, payload = (
                            "POST",
                            "/commands/CancelOrder",
                            {"OrderId": order_id, "Reason": "soak"},
                        )
                    else:
                        name = random.choice(["Linus Torvalds", "Ada Lovelace", "Grace Hopper"])
                        url = f"/queries/GetOrders?CustomerName={name}&Limit={PAGE}"
                        method, payload = "GET", None
                    try:
                        async with session.request(
                            method, stack.base + url, json=payload, headers=headers
                        ) as r:
                            await r.read()
                            ok = r.status < 400
                    except aiohttp.ClientError:
                        ok = False
                    if ok and placing is not None:
                        placed[key].append(placing)  # only a placed order may be cancelled
                requests += 1
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

            if rate is None:
                console.print("measuring the mix's peak: 64 clients for 20 s ...")
                elapsed = await run_for(20, 64, lambda n: one())
                peak = requests / elapsed
                rate = round(peak / 2)
                console.print(f"peak {peak:,.0f} requests/s ({errors} errors); the soak runs at half")
                requests, errors = 0, 0
                latencies.clear()
            console.print(
                f"soak: {rate:g} requests/s for {minutes:g} min over {accounts} accounts "
                f"(logs in {stack.logs})"
            )
            started = time.monotonic()
            deadline = started + minutes * 60
            next_report = started + 10
            tasks: set[asyncio.Task[None]] = set()
            sent = 0
            while time.monotonic() < deadline:
                due = int((time.monotonic() - started) * rate) - sent
                for _ in range(max(0, due)):
                    task = asyncio.create_task(one())
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    sent += 1
                if time.monotonic() >= next_report:
                    window = SoakWindow(
                        at_s=time.monotonic() - started,
                        requests=requests,
                        errors=errors,
                        p50_ms=percentile(latencies, 0.5) * 1000,
                        p99_ms=percentile(latencies, 0.99) * 1000,
                        api_rss_mb=stack.rss_mb(stack.api),
                        worker_rss_mb=stack.rss_mb(stack.worker),
                    )
                    windows.append(window)
                    console.print(
                        f"{window.at_s:6.0f} s  {requests / window.at_s:7.1f} req/s  errors {errors:5d}  "
                        f"p50 {window.p50_ms:6.1f} ms  p99 {window.p99_ms:7.1f} ms  "
                        f"API {window.api_rss_mb:6.0f} MB  worker {window.worker_rss_mb:6.0f} MB"
                    )
                    latencies.clear()
                    next_report += 10
                await asyncio.sleep(0.005)
            await asyncio.gather(*tasks)
    finally:
        await stack.stop()
    if windows:
        first = next((w for w in windows if w.at_s >= 60), windows[0])
        last = windows[-1]
        console.print(
            f"soak done: {last.requests} requests, {last.errors} errors; memory from {first.at_s:.0f} s to "
            f"the end: API {first.api_rss_mb:.0f} -> {last.api_rss_mb:.0f} MB, "
            f"worker {first.worker_rss_mb:.0f} -> {last.worker_rss_mb:.0f} MB"
        )
    if json_path:
        await asyncio.to_thread(
            Path(json_path).write_text, json.dumps([asdict(w) for w in windows], indent=2)
        )
    return windows
