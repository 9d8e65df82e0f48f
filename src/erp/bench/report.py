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
