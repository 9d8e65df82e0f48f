"""`erp bench --soak`: a mixed load held for minutes, watching errors, latency and memory."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp

from erp.bench.load import CUSTOMERS, PAGE, onboard, order_body, run_for
from erp.bench.report import console, percentile
from erp.bench.stack import Stack


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
    windows: list[SoakWindow] = []
    try:
        await stack.start()  # inside: a stack that never becomes healthy is still stopped and dropped
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
            tenants, _ = await onboard(session, stack.base, accounts)
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
                        name = random.choice(CUSTOMERS)
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
