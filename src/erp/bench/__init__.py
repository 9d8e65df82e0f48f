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

The pieces: `stack` (the processes), `load` (what is sent), `phases` (what is measured), `report`
(the figures and their table), `soak` (`--soak`) and `model_scale` (`--model-scale`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path

import aiohttp

from erp.bench.load import BULK, onboard
from erp.bench.phases import (
    appends_then_catch_up,
    http_commands,
    notification_latency,
    store_appends,
    wait_caught_up,
)
from erp.bench.report import Results, console, machine, report
from erp.bench.soak import SoakWindow, run_soak
from erp.bench.stack import Stack

__all__ = ["Results", "SoakWindow", "Stack", "run_bench", "run_soak"]


async def run_bench(
    seconds: float = 10.0, accounts: int = 100, json_path: str | None = None, api_workers: int = 1
) -> Results:
    results = Results(machine=machine(), accounts=accounts)
    stack = Stack(api_workers)
    console.print(
        f"starting database, Temporal, worker and API (port {stack.port}; logs in {stack.logs}) ..."
    )
    try:
        await stack.start()  # inside: a stack that never becomes healthy is still stopped and dropped
        pool = stack.container.databases.main
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector) as session:
            console.print(f"onboarding {accounts} accounts ...")
            tenants = await onboard(session, stack.base, accounts)
            warm_up = max(2.0, seconds / 5)
            console.print(f"warming up (caches, pools, prepared statements) for {warm_up:g} s ...")
            await http_commands(session, stack.base, tenants, warm_up, Results(machine="", accounts=accounts))
            await wait_caught_up(pool)
            console.print(f"PlaceOrder over HTTP for {seconds:g} s ...")
            await http_commands(session, stack.base, tenants, seconds, results)
            await wait_caught_up(pool)
            console.print("command -> notification latency ...")
            await notification_latency(session, stack.base, stack.container.channels, tenants[0], results)
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
