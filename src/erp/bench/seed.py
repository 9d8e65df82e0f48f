"""Seeding an account's event store in bulk, for the benchmark of projection rebuilds.

`seed_orders` writes valid `OrderPlaced` events straight into the store's tables with binary COPY,
each as a PlaceOrder appended through the store would have stored it (`commands/store/append.sql`):
the first event of its own Order stream (revision 1) with its `streams` row, SequenceNumbers
gapless per (account, stream type) after whatever the account holds, and the counter row advanced
with the transaction's xid in `changed` (how projectors find work). Each chunk is one transaction
that takes the append's locks in the append's order: the account's write lock (`AccountElsewhere`
if a move fences the account here), the new streams, then the counter, held to commit, so the
account's concurrent appends still commit in SequenceNumber order. A NOTIFY after each chunk
wakes the projectors.

A chunk's orders are numbered in the order of their (random) ids, so its rows reach the
`(account_id, stream_id, ...)` indexes in key order: random order cost a third of the rate at a
million events, the index then outgrowing the buffers. A replay therefore meets each chunk's
orders in id order.

`bulk_insert_rate` is the baseline: how fast this Postgres COPYs rows shaped like a read-model
order row into an ordinary (logged) table with a primary key.

COPY runs as the pool's user, not as `erp_tenant`: Postgres refuses COPY FROM into a table under
row-level security, so that user must bypass it (as the mover's COPY does). asyncpg's COPY is
binary: the pool's connections speak jsonb in binary (`core.db`), a `msgspec.Raw` going in as it is.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from commands.erp_model import ERP, UPCASTERS
from commands.store.wakeup import EVENTS_CHANNEL
from core.db import create_pool
from core.settings import Settings
from erp.devserver import create_database, drop_database, with_database
from erp.migrate import upgrade_async
from tenancy.fences import write_unfenced

ORDER = ERP.elements["Order"]
EVENT = "OrderPlaced"

EVENT_COLUMNS = (
    "account_id",
    "stream_id",
    "stream_revision",
    "payload_item_name",
    "payload",
    "stream_type",
    "sequence_number",
    "command_id",
    "correlation_id",
    "causation_id",
    "schema_version",
)
"""What the append writes but `commit_time` (now(): the transaction's start, as for the append)
and `trace_context` (its default `{}`, what the append stores for a command with no trace)."""
_STREAM_COLUMNS = ("account_id", "stream_id", "stream_type", "revision")

# As the append advances a counter (append.sql): `changed` is the writing transaction's xid, and
# the row stays locked until commit.
ADVANCE_COUNTER = """
INSERT INTO stream_sequences AS s (account_id, stream_type, last_sequence, changed)
VALUES ($1, $2, $3, pg_current_xact_id())
ON CONFLICT (account_id, stream_type)
DO UPDATE SET last_sequence = s.last_sequence + EXCLUDED.last_sequence, changed = EXCLUDED.changed
RETURNING s.last_sequence
"""
SCOPE = "SELECT set_config('erp.account_id', $1, true)"
_NOTIFY = "SELECT pg_notify($1, $2)"
_PAYLOAD = b'{"OrderId":"%s","CustomerName":"%s","OrderLines":%s,"Total":"%s"}'
"""A PlaceOrder's `OrderPlaced`: its fields (no CustomerId: no spending limit) and the Total."""


@dataclass(frozen=True, slots=True)
class Lines:
    """One way a seeded order's lines look: their JSON, as the wire carries it, and their total."""

    json: bytes
    total: str


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _lines(variant: int) -> Lines:
    """1 to 4 lines, money in the wire's form (`"12.50"`), and their total."""
    items: list[dict[str, Any]] = []
    total = 0
    for line in range(1 + variant % 4):
        quantity = 1 + (variant + line) % 9
        cents = 99 + (variant * 3_719 + line * 1_013) % 20_000
        code = f"P-{(variant * 7 + line) % 1000:04d}"
        items.append({"ProductCode": code, "Quantity": quantity, "UnitPrice": _money(cents)})
        total += quantity * cents
    return Lines(msgspec.json.encode(items), _money(total))


VARIANTS = tuple(_lines(v) for v in range(97))
"""The lines seeded orders take in turn."""
CUSTOMERS = tuple(f"Customer {n:03d}".encode() for n in range(500))
"""The customer names seeded orders take in turn."""

_VARIANT_NIBBLE = dict(zip("0123456789abcdef", "89ab89ab89ab89ab", strict=True))


@contextlib.asynccontextmanager
async def account_database(
    database_url: str, label: str
) -> AsyncIterator[tuple[str, asyncpg.Pool[Any], UUID]]:
    """A database of its own beside `database_url`'s, migrated, with one active account: (its URL,
    a pool on it, the account). Dropped afterwards."""
    url = with_database(database_url, f"erp_{label}_{uuid.uuid4().hex[:10]}")
    await create_database(url)
    try:
        await upgrade_async(Settings(database_url=url))
        pool = await create_pool(Settings(database_url=url), min_size=2, max_size=4)
        try:
            account_id = uuid.uuid4()
            await pool.execute(
                "INSERT INTO accounts (account_id, name, status) VALUES ($1, $2, 'Active')", account_id, label
            )
            yield url, pool, account_id
        finally:
            await pool.close()
    finally:
        await drop_database(url)


def random_ids(count: int) -> list[str]:
    """`count` random (version 4) UUIDs as text, at a third of `str(uuid4())`'s cost each."""
    h = os.urandom(16 * count).hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-"
        f"{_VARIANT_NIBBLE[h[i + 16]]}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


async def seed_orders(
    pool: asyncpg.Pool[Any],
    account_id: UUID,
    events: int,
    *,
    chunk: int = 50_000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write `events` `OrderPlaced` events for one account, each a new Order stream's first, `chunk`
    per transaction; returns the number written. `progress` hears the number written so far after
    each chunk commits. `tenancy.fences.AccountElsewhere` if a move fences the account in this
    database (the chunks committed before it stay)."""
    if events < 0 or chunk < 1:
        raise ValueError(f"events must be >= 0 and chunk >= 1, got {events} and {chunk}")
    written = 0
    async with pool.acquire() as connection:
        while written < events:
            count = min(chunk, events - written)
            orders = sorted(random_ids(count))  # numbered in id order: index inserts in key order
            stream_ids = [f"{ORDER.name}-{order_id}" for order_id in orders]  # as ORDER.stream_id
            async with connection.transaction():
                await write_unfenced(connection, account_id)
                await connection.execute(SCOPE, str(account_id))
                await connection.copy_records_to_table(
                    "streams", records=_streams(account_id, stream_ids), columns=_STREAM_COLUMNS
                )
                last = await connection.fetchval(ADVANCE_COUNTER, account_id, ORDER.stream_type, count)
                await connection.copy_records_to_table(
                    "events",
                    records=_events(account_id, orders, stream_ids, first=last - count + 1, n=written),
                    columns=EVENT_COLUMNS,
                )
            await connection.execute(_NOTIFY, EVENTS_CHANNEL, ORDER.stream_type)
            written += count
            if progress is not None:
                progress(written)
    return written


def _streams(account_id: UUID, stream_ids: list[str]) -> Iterator[tuple[Any, ...]]:
    for stream_id in stream_ids:
        yield account_id, stream_id, ORDER.stream_type, 1


def _events(
    account_id: UUID, orders: list[str], stream_ids: list[str], *, first: int, n: int
) -> Iterator[tuple[Any, ...]]:
    """The orders' events: order i gets SequenceNumber `first + i`, the lines and customer of
    seeded order `n + i`, and a command id of its own (its correlation and causation ids too, as
    for a command's event)."""
    stream_type, version = ORDER.stream_type, UPCASTERS.version(EVENT)
    variants = [(lines.json, lines.total.encode()) for lines in VARIANTS]
    commands = random_ids(len(orders))
    for i, (order_id, stream_id, command_id) in enumerate(zip(orders, stream_ids, commands, strict=True)):
        lines, total = variants[(n + i) % len(variants)]
        customer = CUSTOMERS[(n + i) % len(CUSTOMERS)]
        payload = msgspec.Raw(_PAYLOAD % (order_id.encode(), customer, lines, total))
        yield (account_id, stream_id, 1, EVENT, payload, stream_type, first + i,
               command_id, command_id, command_id, version)  # fmt: skip


_BASELINE_TABLE = """
CREATE TABLE {table} (
    account_id uuid NOT NULL,
    id uuid NOT NULL,
    status text NOT NULL,
    custom jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    total numeric,
    lines jsonb,
    PRIMARY KEY (account_id, id)
)
"""


async def bulk_insert_rate(pool: asyncpg.Pool[Any], rows: int = 200_000) -> float:
    """Rows per second this Postgres COPYs in one transaction into a fresh ordinary table with a
    primary key, rows shaped like a read-model order's (random ids, the seeded orders' lines);
    the table is dropped afterwards. Times the COPY and its commit, not making the rows."""
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    table = f"bench_bulk_insert_{uuid.uuid4().hex}"
    account_id, now = uuid.uuid4(), datetime.now(UTC)
    records: list[tuple[Any, ...]] = [
        (account_id, UUID(order_id), "Placed", {}, now, now, Decimal(lines.total), msgspec.Raw(lines.json))
        for order_id, lines in zip(random_ids(rows), _cycle(VARIANTS, rows), strict=True)
    ]
    async with pool.acquire() as connection:
        await connection.execute(_BASELINE_TABLE.format(table=table))
        try:
            started = time.perf_counter()
            async with connection.transaction():
                await connection.copy_records_to_table(table, records=records)
            elapsed = time.perf_counter() - started
        finally:
            await connection.execute(f"DROP TABLE {table}")
    return rows / elapsed


def _cycle(items: tuple[Lines, ...], count: int) -> Iterator[Lines]:
    return (items[n % len(items)] for n in range(count))
