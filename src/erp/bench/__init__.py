"""`erp bench`: throughput and latency on this machine, printed with ratios to the targets.

It starts its own database, Temporal dev server, worker and API (as separate
processes, as in production), opens 30 accounts one at a time and the rest in one
bulk import over HTTP (timing both), warms the API up with the same load for a fifth
of a phase (at least 2 s, not measured), then measures:

1. PlaceOrder commands/s over HTTP, with concurrent clients over all accounts; then the same load
   against the API and a bare app of its shape with no I/O (`bare`), in alternating windows, and
   the API's commands/s as a ratio to the bare app's (`ceiling`);
2. command -> notification latency: one command at a time, from sending the HTTP request
   to receiving the account's Redis notification that covers its position;
3. events/s appended through the event store directly, concurrent writers over all accounts:
   with the projector keeping up, ten orders per append, and with the worker stopped (the
   store alone), then how fast the projector catches up.

With `--scale-to N` it then onboards accounts up to N in one more import and measures the same
phases with the load spread over all N, in the same run, and prints the ratios (the seed's 10,000
accounts against 100). Then every client on one account, against the same clients over all of them,
on an API with the rate limit off, alternating, and their ratio (`ceiling`). Last, the neighbours: a
quiet account's command and notification p99 alone and while another account floods the API with 64
connections; and a light account's command and ConsistentWith read p99 alone and while another sends
and reads the biggest orders it may. A neighbour's load is sent from a process of its own
(`neighbour`), as another client's would be. Then what sealing personal data costs (`sealing`):
person commands/s over HTTP against the API and against a second one on the stack with
ERP_SEAL_PERSONAL_DATA=0, alternating, and their ratio. Then the rebuilds (`rebuild`): an account's
notifications while the worker builds a new version of the orders read model, and 1,000,000 orders
of one account rebuilt, beside Postgres's own bulk-insert rate.

The pieces: `stack` (the processes), `load` (what is sent), `phases` (what is measured), `bare`
and `ceiling` (the bare app and what is measured against it), `neighbour` (a load in a child
process), `sealing` (sealed against clear), `rebuild` and `seed` (the rebuild lines and their
million orders), `report` (the figures and their table), `soak` (`--soak`) and `model_scale`
(`--model-scale`).
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
from dataclasses import asdict
from pathlib import Path
from uuid import UUID

import aiohttp

from commands.erp_model.common import MAX_ORDER_LINES
from erp.bench.ceiling import SideBySide, api_and_bare, one_account
from erp.bench.load import BULK, onboard, open_accounts
from erp.bench.phases import (
    appends_then_catch_up,
    each_once,
    heavy_neighbour,
    http_commands,
    noisy_neighbour,
    notification_latency,
    store_appends,
    wait_projected,
)
from erp.bench.rebuild import (
    MILLION,
    DuringBuild,
    MillionBuilt,
    million,
    notifications_during_build,
    wait_switched,
)
from erp.bench.report import (
    Results,
    console,
    machine,
    report,
    report_heavy_neighbour,
    report_noisy_neighbour,
    report_one_account,
    report_rebuild,
    report_scale,
    report_sealing,
    report_snapshots,
)
from erp.bench.sealing import SealingMeasured, sealing_on_and_off
from erp.bench.snapshots import RESERVATIONS, ColdOrders, cold_orders
from erp.bench.soak import SoakWindow, run_soak
from erp.bench.stack import Stack

HEAVY_LINES = MAX_ORDER_LINES
"""Order lines of the heavy neighbour's orders: the most an order may have."""

__all__ = ["Results", "SoakWindow", "Stack", "run_bench", "run_soak"]


async def run_bench(
    seconds: float = 10.0,
    accounts: int = 100,
    json_path: str | None = None,
    api_workers: int = 1,
    scale_to: int | None = None,
) -> list[Results]:
    """The phases at `accounts` accounts; with `scale_to`, then the same phases again at that many
    accounts in the same run (the rest onboarded in bulk), and the ratios between the two."""
    stack = Stack(api_workers)
    console.print(
        f"starting database, Temporal, worker and API (port {stack.port}; logs in {stack.logs}) ..."
    )
    measured: list[Results] = []
    try:
        await stack.start()  # inside: a stack that never becomes healthy is still stopped and dropped
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector) as session, stack.container.channels:
            console.print("opening 30 accounts one at a time (POST /accounts) ...")
            singles = await open_accounts(session, stack.base, 30)
            console.print(f"onboarding {accounts:,} accounts in one import ...")
            tenants, took = await onboard(session, stack.base, accounts)
            results = Results(machine=machine(), accounts=accounts, onboarded_per_s=accounts / took)
            results.open_account_p50_ms = statistics.median(singles) * 1000
            await measure(stack, session, tenants, seconds, results)
            measured.append(results)
            if scale_to is not None and scale_to > accounts:
                console.print(f"onboarding {scale_to - accounts:,} more accounts in one import ...")
                more, took = await onboard(session, stack.base, scale_to - accounts, first=accounts)
                large = Results(machine=machine(), accounts=scale_to, onboarded_per_s=len(more) / took)
                large.open_account_p50_ms = results.open_account_p50_ms
                await measure(stack, session, tenants + more, seconds, large)
                measured.append(large)
                # The first accounts again, on the database as the large phases left it: what the
                # run's order changed (more data, the server's housekeeping) rather than the count.
                again = Results(machine=machine(), accounts=accounts)
                console.print(f"the first {accounts:,} accounts again ...")
                await measure(stack, session, tenants, seconds, again)
                measured.append(again)
            console.print(
                "PlaceOrder, every client on one account against all the accounts, alternating, on an API "
                "with the rate limit off ..."
            )
            record_one_account(measured[0], await one_account(stack, session, tenants, tenants[-1], seconds))
            console.print("noisy neighbour: one account floods, another measures ...")
            await noisy_neighbour(
                session, stack.base, stack.container.channels, tenants[0], tenants[1], measured[0]
            )
            console.print(f"heavy neighbour: one account sends and reads orders of {HEAVY_LINES:,} lines ...")
            await heavy_neighbour(session, stack.base, tenants[2], tenants[3], measured[0], lines=HEAVY_LINES)
            console.print(
                "personal data sealed and in the clear: person commands against two new APIs, one with "
                "ERP_SEAL_PERSONAL_DATA=0, alternating ..."
            )
            sealing = await sealing_on_and_off(stack, session, tenants, seconds)
            record_sealing(measured[0], sealing)
            console.print(
                "a new version of the orders read model, built by the worker, while an account measures ..."
            )
            during = await notifications_during_build(
                session, stack.base, stack.container.channels, tenants[4]
            )
            await wait_switched(session, stack.base)
            console.print(f"rebuild: {MILLION:,} orders of one account, in a database of their own ...")
            built = await million(stack.database_url)
            record_rebuild(measured[0], built, during)
            console.print(
                f"snapshots: cold PlaceOrders for a customer with {RESERVATIONS:,} reservations ..."
            )
            record_cold_orders(measured[0], await cold_orders(stack.database_url))
            for results in measured:
                results.api_rss_mb = stack.rss_mb(stack.api)
                results.worker_rss_mb = stack.rss_mb(stack.worker)
    finally:
        await stack.stop()
    for results in measured:
        report(results)
    report_one_account(measured[0])
    report_noisy_neighbour(measured[0])
    report_heavy_neighbour(measured[0], HEAVY_LINES)
    report_sealing(measured[0])
    report_rebuild(measured[0])
    report_snapshots(measured[0])
    if len(measured) == 3:
        report_scale(*measured)
    if json_path:
        document = [asdict(r) for r in measured]
        await asyncio.to_thread(Path(json_path).write_text, json.dumps(document, indent=2))
    return measured


def record_ceiling(results: Results, measured: SideBySide) -> None:
    api, bare = measured.first, measured.second
    results.ceiling_api_commands_per_s = api.per_s
    results.ceiling_api_p50_ms = api.p50_ms
    results.ceiling_api_p99_ms = api.p99_ms
    results.bare_commands_per_s = bare.per_s
    results.bare_p50_ms = bare.p50_ms
    results.bare_p99_ms = bare.p99_ms
    results.bare_errors = bare.errors
    results.ceiling_ratio = measured.ratio
    results.ceiling_window_s = measured.window_s
    results.ceiling_rounds = measured.rounds


def record_one_account(results: Results, measured: SideBySide) -> None:
    one, every = measured.first, measured.second
    results.one_account_commands_per_s = one.per_s
    results.one_account_p50_ms = one.p50_ms
    results.one_account_p99_ms = one.p99_ms
    results.one_account_errors = one.errors + every.errors
    results.every_account_commands_per_s = every.per_s
    results.every_account_p50_ms = every.p50_ms
    results.every_account_p99_ms = every.p99_ms
    results.one_account_ratio = measured.ratio
    results.one_account_window_s = measured.window_s
    results.one_account_rounds = measured.rounds


def record_cold_orders(results: Results, cold: ColdOrders) -> None:
    results.cold_reservations = cold.reservations
    results.cold_without_p50_ms = cold.without_p50_ms
    results.cold_first_with_ms = cold.first_with_ms
    results.cold_with_p50_ms = cold.with_p50_ms
    results.cold_with_p99_ms = cold.with_p99_ms
    results.cold_with_samples = len(cold.with_ms)


def record_rebuild(results: Results, built: MillionBuilt, during: DuringBuild) -> None:
    results.rebuild_events = built.events
    results.rebuild_seconds = built.seconds
    results.rebuild_events_per_s = built.events_per_s
    results.bulk_insert_rows_per_s = built.bulk_insert_rows_per_s
    results.build_events = during.events
    results.build_seconds = during.seconds
    results.build_notifications = during.notifications
    results.build_notification_p50_ms = during.p50_ms
    results.build_notification_p99_ms = during.p99_ms


def record_sealing(results: Results, sealing: SealingMeasured) -> None:
    results.sealed_commands_per_s = sealing.sealed_per_s
    results.clear_commands_per_s = sealing.clear_per_s
    results.sealing_ratio = sealing.ratio
    results.sealed_p99_ms = sealing.sealed_p99_ms
    results.clear_p99_ms = sealing.clear_p99_ms
    results.sealed_commands = sealing.sealed_commands
    results.clear_commands = sealing.clear_commands
    results.sealing_window_s = sealing.window_s
    results.sealing_rounds = sealing.rounds


async def measure(
    stack: Stack,
    session: aiohttp.ClientSession,
    tenants: list[tuple[UUID, str]],
    seconds: float,
    results: Results,
) -> None:
    """Every phase, with the load spread over all of `tenants`."""
    pool = stack.container.databases.main

    def say(doing: str) -> None:
        console.print(f"[{results.accounts:,} accounts] {doing} ...")

    warm_up = max(2.0, seconds / 5)
    say(f"warming up: a command of every account, then {warm_up:g} s of load (caches, pools, statements)")
    heads = await each_once(session, stack.base, tenants)
    await wait_projected(pool, heads)
    heads = await http_commands(session, stack.base, tenants, warm_up, Results(machine="", accounts=0))
    await wait_projected(pool, heads)
    say(f"PlaceOrder over HTTP for {seconds:g} s")
    heads = await http_commands(session, stack.base, tenants, seconds, results)
    await wait_projected(pool, heads)
    say(f"PlaceOrder, the API and the bare framework in alternating windows, {seconds:g} s of each")
    record_ceiling(results, await api_and_bare(stack, session, tenants, seconds))
    say("command -> notification latency")
    await notification_latency(session, stack.base, stack.container.channels, random.choice(tenants), results)
    account_ids = [a for a, _ in tenants]
    say(f"appending through the store, one event per append, for {seconds:g} s")
    appended = await store_appends(stack.settings, account_ids, seconds)
    results.appends_per_s = appended.appends_per_s
    results.appended_events_per_s = appended.events_per_s
    results.projected_events_per_s = appended.projected_per_s
    say(f"appending through the store, {BULK} orders per append, for {seconds:g} s")
    bulk = await store_appends(stack.settings, account_ids, seconds, events_per_append=BULK)
    results.bulk_appended_events_per_s = bulk.events_per_s
    results.bulk_projected_events_per_s = bulk.projected_per_s
    say(f"appending, one event per append, projector paused, for {seconds:g} s")
    (
        results.paused_appended_events_per_s,
        results.catch_up_events_per_s,
    ) = await appends_then_catch_up(stack, account_ids, seconds)
