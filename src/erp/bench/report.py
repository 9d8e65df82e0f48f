"""The bench's figures (`Results`), the machine they were measured on, and the table that prints them
against the targets and the reference library."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field

import psutil
from rich.console import Console
from rich.table import Table

from erp.bench.load import BULK

console = Console(width=120)


@dataclass
class Results:
    machine: str
    accounts: int
    http_commands: int = 0
    http_errors: int = 0
    http_commands_per_s: float = 0.0
    http_latency_p50_ms: float = 0.0
    http_latency_p99_ms: float = 0.0
    ceiling_api_commands_per_s: float = 0.0
    """PlaceOrder commands/s of the API in the windows alternating with the bare app's (`ceiling`)."""
    ceiling_api_p50_ms: float = 0.0
    ceiling_api_p99_ms: float = 0.0
    bare_commands_per_s: float = 0.0
    """The same PlaceOrders from the same clients to the bare app of the API's shape, no I/O
    (`erp.bench.bare`), served as the API is: the framework's ceiling on this machine."""
    bare_p50_ms: float = 0.0
    bare_p99_ms: float = 0.0
    bare_errors: int = 0
    ceiling_ratio: float = 0.0
    """The API's commands/s over the bare app's, in the same alternating windows."""
    ceiling_window_s: float = 0.0
    ceiling_rounds: int = 0
    one_account_commands_per_s: float = 0.0
    """PlaceOrder commands/s with every client on one account (an API with the rate limit off)."""
    one_account_p50_ms: float = 0.0
    one_account_p99_ms: float = 0.0
    one_account_errors: int = 0
    every_account_commands_per_s: float = 0.0
    """The same clients over all the accounts, on the same API, in the windows alternating with it."""
    every_account_p50_ms: float = 0.0
    every_account_p99_ms: float = 0.0
    one_account_ratio: float = 0.0
    """One account's commands/s over all the accounts' (target: none; what one account's commands share)."""
    one_account_window_s: float = 0.0
    one_account_rounds: int = 0
    appends_per_s: float = 0.0
    appended_events_per_s: float = 0.0
    projected_events_per_s: float = 0.0
    bulk_appended_events_per_s: float = 0.0
    bulk_projected_events_per_s: float = 0.0
    paused_appended_events_per_s: float = 0.0
    catch_up_events_per_s: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    onboarded_per_s: float = 0.0
    """Accounts opened per second by one bulk import (POST /accounts/import), until all were Active."""
    open_account_p50_ms: float = 0.0
    """POST /accounts (one account, onboarded by its workflow) answered, median."""
    quiet_command_p99_ms: float = 0.0
    quiet_notification_p99_ms: float = 0.0
    flooded_command_p99_ms: float = 0.0
    """The quiet account's, while another floods the API with 64 connections."""
    flooded_notification_p99_ms: float = 0.0
    flood_accepted_per_s: float = 0.0
    flood_limited_per_s: float = 0.0
    """The flooding account's commands answered 429 per second (over its rate limit)."""
    flood_other: int = 0
    flood_failed: int = 0
    """The flooding account's requests that got no answer (a kept-alive connection closed)."""
    """The flooding account's answers that were neither 200 nor 429."""
    light_command_p99_ms: float = 0.0
    light_read_p99_ms: float = 0.0
    """A light account's GetOrders ConsistentWith its command's token, alone."""
    heavy_command_p99_ms: float = 0.0
    """The light account's, while another sends and reads the biggest orders it may."""
    heavy_read_p99_ms: float = 0.0
    heavy_answers_per_s: dict[str, float] = field(default_factory=dict)
    """The heavy account's answers per second, by status."""
    heavy_mb_read_per_s: float = 0.0
    api_rss_mb: float = 0.0
    worker_rss_mb: float = 0.0
    rebuild_events: int = 0
    """Orders of one account in the rebuild line (1,000,000)."""
    rebuild_seconds: float = 0.0
    """A new version of their read model built and switched in."""
    rebuild_events_per_s: float = 0.0
    bulk_insert_rows_per_s: float = 0.0
    """Postgres's own COPY rate into a table with a primary key, in the same run."""
    build_events: int = 0
    """Events the stack's worker replayed into a new version of the orders read model."""
    build_seconds: float = 0.0
    build_notifications: int = 0
    build_notification_p50_ms: float = 0.0
    build_notification_p99_ms: float = 0.0
    """Another account's command -> notification while that build ran."""
    sealed_commands_per_s: float = 0.0
    """Personal-data commands/s over HTTP (RegisterPerson, RenamePerson twice, ChangeAddress), the
    personal fields sealed (`erp.bench.sealing`)."""
    clear_commands_per_s: float = 0.0
    """The same, from a second API on the stack with ERP_SEAL_PERSONAL_DATA=0, alternating."""
    sealing_ratio: float = 0.0
    """sealed / clear commands/s (target: at least 0.9)."""
    sealed_p99_ms: float = 0.0
    clear_p99_ms: float = 0.0
    sealed_commands: int = 0
    clear_commands: int = 0
    sealing_window_s: float = 0.0
    sealing_rounds: int = 0
    cold_reservations: int = 0
    """Reservations on the big customer's stream in the snapshot line."""
    cold_without_p50_ms: float = 0.0
    """A cold PlaceOrder for it without snapshots (the whole stream replayed)."""
    cold_first_with_ms: float = 0.0
    """The first with snapshots: it replays the stream once and leaves one."""
    cold_with_p50_ms: float = 0.0
    cold_with_p99_ms: float = 0.0
    cold_with_samples: int = 0
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


def ratio(value: float, other: float | None, higher_is_better: bool) -> str:
    """How many times better than `other` (above 1 is better), or blank."""
    if other is None or value != value or value == 0:
        return ""
    return f"{(value / other if higher_is_better else other / value):.2f}x"


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
        ("accounts onboarded/s, one bulk import", results.onboarded_per_s, 100.0, True, None),
        ("POST /accounts p50 ms (one account)", results.open_account_p50_ms, 100.0, False, None),
    ]
    for name, value, target, higher_is_better, reference in rows:
        if not value:
            continue  # not measured in this part of the run (onboarding, for the first accounts again)
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
    report_ceiling(results)


def report_ceiling(results: Results) -> None:
    """The API's PlaceOrder commands/s as a ratio to the bare app's, measured side by side."""
    if not results.bare_commands_per_s:
        return  # not measured
    console.print(
        f"PlaceOrder on {results.accounts:,} accounts: {results.ceiling_api_commands_per_s:,.0f}/s = "
        f"{results.ceiling_ratio:.2f}x the bare framework ({results.bare_commands_per_s:,.0f}/s); "
        f"p50 {results.ceiling_api_p50_ms:,.1f} ms, p99 {results.ceiling_api_p99_ms:,.1f} ms "
        f"(bare: p50 {results.bare_p50_ms:,.1f} ms, p99 {results.bare_p99_ms:,.1f} ms); "
        f"{results.ceiling_rounds} alternating windows of {results.ceiling_window_s:g} s each, same clients "
        "and body" + (f"; {results.bare_errors} bare answers not 200" if results.bare_errors else ""),
        highlight=False,
    )


def report_one_account(results: Results) -> None:
    """Every client on one account, as a ratio to the same clients over all the accounts."""
    if not results.one_account_commands_per_s:
        return  # not measured
    console.print(
        f"PlaceOrder, all load clients on one account: {results.one_account_commands_per_s:,.0f}/s, "
        f"p50 {results.one_account_p50_ms:,.1f} ms, p99 {results.one_account_p99_ms:,.1f} ms = "
        f"{results.one_account_ratio:.2f}x the {results.accounts:,} accounts "
        f"({results.every_account_commands_per_s:,.0f}/s, p50 {results.every_account_p50_ms:,.1f} ms, "
        f"p99 {results.every_account_p99_ms:,.1f} ms); an API with the rate limit off, "
        f"{results.one_account_rounds} alternating windows of {results.one_account_window_s:g} s each"
        + (f"; {results.one_account_errors} answers not 200" if results.one_account_errors else ""),
        highlight=False,
    )


def report_noisy_neighbour(results: Results) -> None:
    """The quiet account alone and during another's flood: within 2x, and the flood limited."""
    table = Table(title="noisy neighbour: one account floods with 64 connections, another measures")
    for column in ("measure of the quiet account", "alone", "during the flood", "ratio", "target"):
        table.add_column(column, justify="left" if column.startswith("measure") else "right")
    for name, calm, loud in (
        ("command p99 ms", results.quiet_command_p99_ms, results.flooded_command_p99_ms),
        (
            "command -> notification p99 ms",
            results.quiet_notification_p99_ms,
            results.flooded_notification_p99_ms,
        ),
    ):
        table.add_row(name, f"{calm:,.1f}", f"{loud:,.1f}", f"{loud / calm:.2f}x" if calm else "", "<= 2x")
    console.print(table)
    console.print(
        f"the flooding account: {results.flood_accepted_per_s:,.0f} commands/s accepted, "
        f"{results.flood_limited_per_s:,.0f}/s answered 429 (over its rate limit), "
        f"{results.flood_other} other answers"
        + (
            f", {results.flood_failed} requests with no answer (connection closed)"
            if results.flood_failed
            else ""
        )
    )


def report_heavy_neighbour(results: Results, lines: int) -> None:
    """The light account alone and while a heavy one sends and reads the biggest orders: within 2x."""
    table = Table(
        title=f"heavy neighbour: one account writes and reads orders of {lines:,} lines, another measures"
    )
    for column in ("measure of the light account", "alone", "during the load", "ratio", "target"):
        table.add_column(column, justify="left" if column.startswith("measure") else "right")
    for name, calm, loud in (
        ("command p99 ms", results.light_command_p99_ms, results.heavy_command_p99_ms),
        ("GetOrders ConsistentWith p99 ms", results.light_read_p99_ms, results.heavy_read_p99_ms),
    ):
        table.add_row(name, f"{calm:,.1f}", f"{loud:,.1f}", f"{loud / calm:.2f}x" if calm else "", "<= 2x")
    console.print(table)
    answers = ", ".join(f"{n:,.1f}/s {status}" for status, n in results.heavy_answers_per_s.items())
    console.print(f"the heavy account: {answers}; {results.heavy_mb_read_per_s:,.1f} MB/s of orders read")


SCALE_TARGETS = (
    # (measure, field, higher is better, target ratio of large to small)
    ("PlaceOrder over HTTP, commands/s", "http_commands_per_s", True, 0.8),
    ("events appended/s, 1 per append, projector keeping up", "appended_events_per_s", True, 0.8),
    ("events appended/s, projector paused", "paused_appended_events_per_s", True, 0.8),
    ("events projected/s catching up", "catch_up_events_per_s", True, 0.8),
    ("command -> notification p99 ms", "latency_p99_ms", False, 1.5),
    ("events appended/s, 10 per append", "bulk_appended_events_per_s", True, None),
    ("HTTP latency p99 ms (under load)", "http_latency_p99_ms", False, None),
    ("PlaceOrder: the API / the bare framework", "ceiling_ratio", True, None),
    ("command -> notification p50 ms", "latency_p50_ms", False, None),
    ("accounts onboarded/s, one bulk import", "onboarded_per_s", True, None),
)


def report_scale(small: Results, large: Results, again: Results) -> None:
    """The same figures at two account counts, measured in one run (small, large, small again), and
    the large ones' ratios to the mean of the two small ones, which takes out what drifted over the
    run (more data, the server's housekeeping) rather than what the account count changed."""
    title = (
        f"erp bench — {small.accounts:,} against {large.accounts:,} accounts, one run: "
        f"{small.accounts:,}, {large.accounts:,}, {small.accounts:,} again ({small.machine})"
    )
    table = Table(title=title)
    columns = (
        "measure",
        f"{small.accounts:,}",
        f"{large.accounts:,}",
        f"{small.accounts:,} again",
        f"ratio to the {small.accounts:,}s' mean",
        "target",
        "",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "measure" else "right")
    for name, attribute, higher_is_better, target in SCALE_TARGETS:
        a, b, c = getattr(small, attribute), getattr(large, attribute), getattr(again, attribute)
        baseline = (a + c) / 2 if c else a
        ratio_value = b / baseline if baseline else float("nan")
        verdict = ""
        if target is not None:
            verdict = (
                "ok" if (ratio_value >= target if higher_is_better else ratio_value <= target) else "MISSED"
            )
        shown = "" if target is None else f"{'>=' if higher_is_better else '<='} {target}x"
        digits = 2 if attribute.endswith("ratio") else 1
        later = f"{c:,.{digits}f}" if c else ""
        table.add_row(
            name, f"{a:,.{digits}f}", f"{b:,.{digits}f}", later, f"{ratio_value:.2f}x", shown, verdict
        )
    console.print(table)


def report_rebuild(results: Results) -> None:
    """A new version of a read model built at bulk speed, and what it costs the other accounts."""
    table = Table(title="rebuilds: a new version of a read model built beside the live one")
    for column in ("measure", "value", "target", "vs target", "vs Postgres bulk insert"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    rate, bulk = results.rebuild_events_per_s, results.bulk_insert_rows_per_s
    table.add_row(
        f"{results.rebuild_events:,} orders of one account: events/s rebuilt",
        f"{rate:,.0f}",
        "50,000",
        ratio(rate, 50_000.0, True),
        f"{rate / bulk:.2f}x" if bulk else "",
    )
    table.add_row(
        f"  time to rebuild {results.rebuild_events:,} events, s",
        f"{results.rebuild_seconds:,.1f}",
        "30",
        ratio(results.rebuild_seconds, 30.0, False),
        "",
    )
    table.add_row("Postgres bulk insert (COPY), rows/s, same run", f"{bulk:,.0f}", "", "", "1.00x")
    table.add_row(
        "command -> notification p99 ms, while the worker builds",
        f"{results.build_notification_p99_ms:,.1f}",
        "50",
        ratio(results.build_notification_p99_ms, 50.0, False),
        "",
    )
    table.add_row(
        f"  p50 ms (p99 without a build: {results.latency_p99_ms:,.1f})",
        f"{results.build_notification_p50_ms:,.1f}",
        "",
        "",
        "",
    )
    console.print(table)
    if results.build_seconds:
        console.print(
            f"the stack's build: {results.build_events:,} events replayed and switched in within "
            f"{results.build_seconds:,.1f} s ({results.build_events / results.build_seconds:,.0f} events/s), "
            f"{results.build_notifications} notifications timed meanwhile"
        )


SEALING_TARGET = 0.9
"""Personal-data commands/s with sealing on, at least this much of theirs with it off."""


def report_sealing(results: Results) -> None:
    """Personal-data commands/s with sealing on and off, side by side: on at least 0.9x off."""
    if not results.clear_commands_per_s:
        return  # not measured
    table = Table(title="personal data sealed: the same commands with ERP_SEAL_PERSONAL_DATA on and off")
    for column in ("measure", "sealed", "in the clear", "ratio", "target", ""):
        table.add_column(column, justify="left" if column == "measure" else "right")
    ratio_value = results.sealing_ratio
    table.add_row(
        "RegisterPerson, RenamePerson x2, ChangeAddress over HTTP, commands/s",
        f"{results.sealed_commands_per_s:,.1f}",
        f"{results.clear_commands_per_s:,.1f}",
        f"{ratio_value:.2f}x",
        f">= {SEALING_TARGET}x",
        "ok" if ratio_value >= SEALING_TARGET else "MISSED",
    )
    table.add_row(
        "  HTTP latency p99 ms (under load)",
        f"{results.sealed_p99_ms:,.1f}",
        f"{results.clear_p99_ms:,.1f}",
        f"{results.sealed_p99_ms / results.clear_p99_ms:.2f}x" if results.clear_p99_ms else "",
        "",
        "",
    )
    console.print(table)
    console.print(
        f"{results.sealed_commands:,} commands sealed, {results.clear_commands:,} in the clear (two APIs "
        f"started for the phase on the same stack, one with ERP_SEAL_PERSONAL_DATA=0), in "
        f"{results.sealing_rounds} alternating windows of {results.sealing_window_s:g} s each after a "
        "warm-up of each"
    )


COLD_ORDER_TARGET_MS = 50.0


def report_snapshots(results: Results) -> None:
    """PlaceOrder for a customer with a long stream from cold processes, with and without snapshots."""
    if not results.cold_reservations:
        return  # not measured
    table = Table(
        title=f"snapshots: PlaceOrder for a customer with {results.cold_reservations:,} reservations, "
        "each from a process with no stream cache"
    )
    for column in ("measure", "value", "target", ""):
        table.add_column(column, justify="left" if column == "measure" else "right")
    p99 = results.cold_with_p99_ms
    table.add_row(
        f"with snapshots: p99 ms ({results.cold_with_samples} orders)",
        f"{p99:,.1f}",
        f"<= {COLD_ORDER_TARGET_MS:g}",
        "ok" if p99 <= COLD_ORDER_TARGET_MS else "MISSED",
    )
    table.add_row("  p50 ms", f"{results.cold_with_p50_ms:,.1f}", "", "")
    table.add_row(
        "  the first, which replays the stream once and leaves a snapshot, ms",
        f"{results.cold_first_with_ms:,.0f}",
        "",
        "",
    )
    table.add_row(
        "without snapshots: p50 ms (the whole stream replayed)", f"{results.cold_without_p50_ms:,.0f}", "", ""
    )
    console.print(table)
