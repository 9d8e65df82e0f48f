"""`erp bench --fan-out`: the seed's hardest case (slides 52-58), one customer with 1,000,000 orders
and invoices, renamed, under each way a read model can show the customer's name
(`commands.model.read_models`).

One database is seeded once: an account with the big customer (its party an Organisation, its
1,000,000 orders, their reservations on its stream and their open invoices, written by COPY as the
store would have stored them), an ordinary customer with a few orders, and `OTHERS` other
accounts. The read models are built from it (a blue/green bulk pass). Then, for each strategy, a
copy of that database (`CREATE DATABASE ... TEMPLATE`) is built with the orders (and, for
`joined`, the customers) read model declared that way, and measured side by side:

- the time from the rename command's answer to consistent: the orders read model's position for
  the rename's stream type (what a ConsistentWith wait reads) is at the rename, its fan-out done;
- the read-model rows the rename wrote (those whose xmin is a transaction from the rename on);
- GetOrders p50/p99, first page, for the big customer and for the ordinary one;
- the other accounts' command -> notification p99 from the rename until consistent (and at least
  `WINDOW` seconds): each sends PlaceOrder and waits for its orders notification.

A child process runs the worker's loops (each read model's projector, with its fan-out and its
chained read models beside it: `queries.projector.follow`), as `erp worker` runs them, and
publishes the notifications on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
from litestar.channels import ChannelsPlugin

from commands.erp_model import CHAINED, ERP, READ_MODELS, UPCASTERS
from commands.model.read_models import ReadModel, Shown, Strategy
from commands.service import CommandService
from commands.store.event_store import EventStore
from commands.store.feed import EventFeed
from commands.store.wakeup import ProjectorWakeup
from core.db import create_pool
from core.settings import Settings
from erp.bench.report import percentile
from erp.bench.seed import ADVANCE_COUNTER, EVENT_COLUMNS, SCOPE, account_database, random_ids
from erp.devserver import drop_database, with_database
from queries import fan_out_jobs, versions
from queries.blue_green import START, Build
from queries.chained import ChainedProjection
from queries.model_projection import ModelProjection
from queries.notifications import Notification, channel_for
from queries.projector import Projector
from queries.shown import Scope, Shows
from queries.views import GetOrders, get_orders, orders_sql
from tenancy.fences import write_unfenced
from tenancy.rls import tenant_transaction

ORDERS = 1_000_000
OTHERS = 20
WINDOW = 3.0
"""Seconds the other accounts' notifications are timed at least, from the rename."""
QUERIES = 200
STRATEGIES = (Strategy.JOINED, Strategy.COMBINED, Strategy.COPIED)
BIG = "Big Customer Ltd"
ORDER = ERP.elements["Order"]
CUSTOMER = ERP.elements["Customer"]


def read_models(strategy: Strategy) -> tuple[ReadModel, ...]:
    """The ERP's read models, with an order's customer name shown by `strategy`. Joined reads it
    from the party's own table, through the customer (so the customers read model shows it joined
    too); combined reads the customers' table, which has it copied; copied has it on each order."""
    changed: list[ReadModel] = []
    for r in READ_MODELS:
        shows = []
        for s in r.shows:
            if (s.element, s.name) == ("Order", "PartyName"):
                s = Shown(s.element, s.name, s.via, s.sources, strategy, line=s.line)
            elif (s.element, s.name) == ("Customer", "PartyName") and strategy is Strategy.JOINED:
                s = Shown(s.element, s.name, s.via, s.sources, Strategy.JOINED, line=s.line)
            elif s.element == "Delivery" and strategy is not Strategy.COPIED:
                s = Shown(s.element, s.name, "OrderId", ("Order.CustomerName",), Strategy.JOINED, line=s.line)
            shows.append(s)
        changed.append(ReadModel(r.name, r.elements, tuple(shows), line=r.line))
    return tuple(changed)


def projections(strategy: Strategy) -> dict[str, ModelProjection]:
    shows = Shows(ERP, read_models(strategy))
    chained = tuple(ChainedProjection(ERP, c) for c in CHAINED)
    return {
        r.name: ModelProjection(
            r.name, ERP, r.elements, shows=shows, feeds=tuple(c for c in chained if c.fed_by == r.name)
        )
        for r in shows.read_models.values()
    }


@dataclass
class Measured:
    strategy: str
    consistent_ms: float
    """From the rename's answer to consistent, nothing else running."""
    loaded_consistent_ms: float
    """The same while the other accounts send orders."""
    rows_written: int
    big_p50_ms: float
    big_p99_ms: float
    ordinary_p50_ms: float
    ordinary_p99_ms: float
    others_p99_ms: float
    others: int
    """Notifications timed."""


@dataclass
class FanOutBench:
    orders: int
    measured: list[Measured] = field(default_factory=list)


async def fan_out_bench(database_url: str, redis_url: str, orders: int = ORDERS) -> FanOutBench:
    """Seed once, then measure each strategy in a copy of the seeded database."""
    result = FanOutBench(orders)
    async with account_database(database_url, "fanout") as (url, pool, account_id):
        seeded = await _seed(pool, account_id, orders)
        await pool.close()
        for strategy in STRATEGIES:
            copy = with_database(database_url, f"erp_fanout_{strategy.value}_{uuid.uuid4().hex[:8]}")
            await _clone(url, copy)
            try:
                result.measured.append(await _measure(copy, redis_url, strategy, seeded))
            finally:
                await drop_database(copy)
    return result


@dataclass(frozen=True)
class Seeded:
    account_id: UUID
    organisation: str
    big: str
    ordinary: str
    ordinary_name: str
    others: list[tuple[UUID, str]]
    """(account, customer) of each other account."""


async def _run(service: CommandService, account_id: UUID, command: str, body: dict[str, Any]) -> Any:
    return await service.execute(account_id, service.parse(command, json.dumps(body).encode()))


async def _customer(service: CommandService, account_id: UUID, name: str) -> tuple[str, str]:
    """An organisation named `name`, a workarea and a customer of it: (organisation, customer)."""
    organisation, workarea, customer = (str(uuid.uuid4()) for _ in range(3))
    await _run(service, account_id, "RegisterOrganisation", {"OrganisationId": organisation, "Name": name})
    await _run(service, account_id, "CreateWorkarea", {"WorkareaId": workarea, "Name": "North"})
    body = {"CustomerId": customer, "PartyId": organisation, "WorkareaId": workarea}
    await _run(service, account_id, "MakeCustomer", {**body, "SpendingLimit": "99999999.00"})
    return organisation, customer


async def _order(service: CommandService, account_id: UUID, customer: str, name: str) -> None:
    lines = [{"ProductCode": "P", "Quantity": 1, "UnitPrice": "1.00"}]
    body = {"OrderId": str(uuid.uuid4()), "CustomerName": name, "OrderLines": lines, "CustomerId": customer}
    await _run(service, account_id, "PlaceOrder", body)


async def _seed(pool: asyncpg.Pool[Any], account_id: UUID, orders: int) -> Seeded:
    service = CommandService(pool, EventStore(UPCASTERS))
    organisation, big = await _customer(service, account_id, BIG)
    _, ordinary = await _customer(service, account_id, "Ordinary Ltd")
    for _ in range(50):
        await _order(service, account_id, ordinary, "Ordinary Ltd")
    await _big_orders(pool, account_id, big, orders)
    others = []
    for n in range(OTHERS):
        other = uuid.uuid4()
        await pool.execute(
            "INSERT INTO accounts (account_id, name, status) VALUES ($1, $2, 'Active')", other, f"o{n}"
        )
        _, customer = await _customer(service, other, f"Other {n}")
        others.append((other, customer))
    await pool.execute("VACUUM ANALYZE events")
    feed = EventFeed(UPCASTERS)
    live = projections(Strategy.COPIED)
    await Projector(pool, live["customers"], feed).catch_up()
    for name in ("orders", "activities"):
        build = await Build.prepare(pool, live[name], feed)
        await build.bulk_pass(START)
        await build.catch_up()
        await build.switch()
    return Seeded(account_id, organisation, big, ordinary, "Ordinary Ltd", others)


_ORDER_PAYLOAD = (
    b'{"OrderId":"%s","CustomerName":"%s","OrderLines":[{"Quantity":1,"UnitPrice":"1.00",'
    b'"ProductCode":"P"}],"Total":"1.00","CustomerId":"%s"}'
)
_RESERVED = b'{"CustomerId":"%s","OrderId":"%s","Amount":"1.00"}'
_INVOICED = b'{"InvoiceId":"%s","OrderId":"%s","CustomerId":"%s","Amount":"1.00"}'


async def _big_orders(
    pool: asyncpg.Pool[Any], account_id: UUID, customer: str, count: int, chunk: int = 100_000
) -> None:
    """`count` orders of the customer, each with its reservation on the customer's stream and an
    open invoice, as the store's appends would have stored them."""
    customer_stream = CUSTOMER.stream_id(UUID(customer))
    written = 0
    async with pool.acquire() as connection:
        while written < count:
            n = min(chunk, count - written)
            orders = sorted(random_ids(n))
            streams = [f"Order-{o}" for o in orders]
            invoices = sorted(random_ids(n))
            commands = random_ids(n)
            async with connection.transaction():
                await write_unfenced(connection, account_id)
                await connection.execute(SCOPE, str(account_id))
                revision = await connection.fetchval(
                    "SELECT revision FROM streams WHERE account_id = $1 AND stream_id = $2 FOR UPDATE",
                    account_id,
                    customer_stream,
                )
                await connection.execute(
                    "UPDATE streams SET revision = revision + $3 WHERE account_id = $1 AND stream_id = $2",
                    account_id,
                    customer_stream,
                    n,
                )
                await connection.copy_records_to_table(
                    "streams",
                    records=[
                        *((account_id, s, "Order", 1) for s in streams),
                        *((account_id, f"Invoice-{i}", "Invoice", 1) for i in invoices),
                    ],
                    columns=("account_id", "stream_id", "stream_type", "revision"),
                )
                last_order = await connection.fetchval(ADVANCE_COUNTER, account_id, "Order", n)
                last_customer = await connection.fetchval(ADVANCE_COUNTER, account_id, "Customer", n)
                last_invoice = await connection.fetchval(ADVANCE_COUNTER, account_id, "Invoice", n)
                issued = UPCASTERS.version("InvoiceIssued")
                placed, reserved = UPCASTERS.version("OrderPlaced"), UPCASTERS.version("AmountReserved")
                records: list[tuple[Any, ...]] = []
                for i, (order_id, stream_id, command_id) in enumerate(
                    zip(orders, streams, commands, strict=True)
                ):
                    payload = msgspec.Raw(
                        _ORDER_PAYLOAD % (order_id.encode(), BIG.encode(), customer.encode())
                    )
                    first = last_order - n + 1
                    records.append((account_id, stream_id, 1, "OrderPlaced", payload, "Order", first + i,
                                    command_id, command_id, command_id, placed))  # fmt: skip
                    records.append((account_id, customer_stream, revision + 1 + i, "AmountReserved",
                                    msgspec.Raw(_RESERVED % (customer.encode(), order_id.encode())),
                                    "Customer", last_customer - n + 1 + i, command_id, command_id, command_id,
                                    reserved))  # fmt: skip
                for i, (invoice_id, order_id, command_id) in enumerate(
                    zip(invoices, orders, commands, strict=True)
                ):
                    payload = msgspec.Raw(
                        _INVOICED % (invoice_id.encode(), order_id.encode(), customer.encode())
                    )
                    stream_id, first = f"Invoice-{invoice_id}", last_invoice - n + 1
                    records.append((account_id, stream_id, 1, "InvoiceIssued", payload, "Invoice", first + i,
                                    command_id, command_id, command_id, issued))  # fmt: skip
                await connection.copy_records_to_table("events", records=records, columns=EVENT_COLUMNS)
            written += n


async def _clone(source_url: str, target_url: str) -> None:
    source = source_url.rsplit("/", 1)[1]
    target = target_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(with_database(source_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')
    finally:
        await admin.close()


_WORKER = """
import asyncio, sys
from core.db import create_pool
from core.redis_client import redis_client
from core.settings import Settings
from erp.bench.fan_out import projections
from commands.erp_model import UPCASTERS
from commands.model.read_models import Strategy
from commands.store.feed import EventFeed
from queries.notifications import Notifier
from queries.projector import Projector, follow

async def main() -> None:
    url, redis_url, strategy = sys.argv[1], sys.argv[2], Strategy(sys.argv[3])
    settings = Settings(database_url=url, redis_url=redis_url)
    pool = await create_pool(settings, min_size=2, max_size=8)
    notifier = Notifier(redis_client(redis_url))
    loops = [
        follow(Projector(pool, p, EventFeed(UPCASTERS), notifier), url)
        for p in projections(strategy).values()
    ]
    print("ready", flush=True)
    await asyncio.gather(*loops)

asyncio.run(main())
"""


@contextlib.asynccontextmanager
async def _worker(url: str, redis_url: str, strategy: Strategy) -> AsyncIterator[None]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _WORKER, url, redis_url, strategy.value, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 60)
        if line != b"ready\n":
            raise RuntimeError(f"the bench's worker did not start: {line!r}")
        yield
    finally:
        child.terminate()
        with contextlib.suppress(ProcessLookupError):
            await asyncio.wait_for(child.wait(), 15)


async def _measure(url: str, redis_url: str, strategy: Strategy, seeded: Seeded) -> Measured:
    """Build the copy's read models as `strategy` declares them, then rename the big customer."""
    settings = Settings(database_url=url, redis_url=redis_url)
    pool = await create_pool(settings, min_size=4, max_size=12)
    try:
        feed = EventFeed(UPCASTERS)
        variant = projections(strategy)
        for name in ("customers", "orders"):
            live = await versions.live(pool, name)
            if live is not None and live.shape == variant[name].shape:
                continue  # the seeded database's read model is declared so already
            build = await Build.prepare(pool, variant[name], feed)
            await build.bulk_pass(START)
            await build.catch_up()
            await build.switch()
        await pool.execute("VACUUM ANALYZE")
        sql = orders_sql(Shows(ERP, read_models(strategy)))
        wakeup = ProjectorWakeup(pool)
        async with _worker(url, redis_url, strategy), _channels(redis_url) as channels:
            service = CommandService(pool, EventStore(UPCASTERS), wakeup=wakeup)
            warm = asyncio.Event()
            warm.set()
            await _others(service, channels, seeded, warm, 1.0)  # warm up: each account's first notification
            scope = variant["orders"].scope

            async def rename(name: str) -> float:
                """Rename the big customer's party; the seconds from the command's answer to consistent."""
                body = {"OrganisationId": seeded.organisation, "Name": name}
                renamed = await _run(service, seeded.account_id, "RenameOrganisation", body)
                started = time.perf_counter()
                target = renamed.positions["Organisation"]
                await _consistent(pool, scope, seeded.account_id, "Organisation", target)
                return time.perf_counter() - started

            # Once with nothing else running: its time, and the rows it wrote.
            before = await pool.fetchval(_NEXT_XID)
            consistent = await rename(f"{BIG} {strategy.value}")
            rows = await _rows_written(pool, before)
            # Once more while the other accounts send orders: their notifications meanwhile.
            done = asyncio.Event()
            sampling = asyncio.create_task(_others(service, channels, seeded, done, WINDOW))
            loaded = await rename(f"{BIG} {strategy.value} again")
            done.set()
            latencies = await sampling
            new_name = f"{BIG} {strategy.value} again"
        await wakeup.close()
        big = await _queries(pool, seeded.account_id, sql, new_name)
        ordinary = await _queries(pool, seeded.account_id, sql, seeded.ordinary_name)
        return Measured(
            strategy.value,
            consistent * 1000,
            loaded * 1000,
            rows,
            statistics.median(big),
            percentile(big, 0.99),
            statistics.median(ordinary),
            percentile(ordinary, 0.99),
            percentile(latencies, 0.99) * 1000 if latencies else float("nan"),
            len(latencies),
        )
    finally:
        await pool.close()


async def _consistent(
    pool: asyncpg.Pool[Any], scope: Scope, account_id: UUID, stream_type: str, target: int
) -> None:
    """Until a ConsistentWith wait for `target` would end: the positions it reads, every 2 ms."""
    reached = asyncio.Event()
    while not reached.is_set():
        found = await fan_out_jobs.positions(pool, scope.owners, scope.fan_outs, account_id, [stream_type])
        if found[stream_type] >= target:
            reached.set()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reached.wait(), 0.002)


@contextlib.asynccontextmanager
async def _channels(redis_url: str) -> AsyncIterator[ChannelsPlugin]:
    from litestar.channels.backends.redis import RedisChannelsPubSubBackend
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    channels = ChannelsPlugin(
        backend=RedisChannelsPubSubBackend(redis=redis), arbitrary_channels_allowed=True
    )
    async with channels:
        yield channels
    await redis.aclose()


async def _others(
    service: CommandService, channels: ChannelsPlugin, seeded: Seeded, done: asyncio.Event, seconds: float
) -> list[float]:
    """The other accounts, one after another, each placing an order and waiting for its orders
    notification; the latencies, for at least `seconds` and until `done` is set."""
    decode = msgspec.json.Decoder(Notification).decode
    latencies: list[float] = []
    started = time.perf_counter()
    n = 0
    while time.perf_counter() - started < seconds or not done.is_set():
        account_id, customer = seeded.others[n % len(seeded.others)]
        n += 1
        async with channels.start_subscription(channel_for(account_id)) as subscriber:
            sent = time.perf_counter()
            lines = [{"ProductCode": "P", "Quantity": 1, "UnitPrice": "1.00"}]
            body = {
                "OrderId": str(uuid.uuid4()),
                "CustomerName": "x",
                "OrderLines": lines,
                "CustomerId": customer,
            }
            result = await _run(service, account_id, "PlaceOrder", body)
            target = result.positions["Order"]
            async for raw in subscriber.iter_events():
                note = decode(raw)
                if note.projection == "orders" and note.stream_type == "Order" and note.position >= target:
                    latencies.append(time.perf_counter() - sent)
                    break
    return latencies


_NEXT_XID = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint % 4294967296"
"""The transaction id the next write gets, as a row's `xmin` holds it (32 bits: a bench never wraps)."""
_WRITTEN = "SELECT count(*) FROM {table} WHERE xmin::text::bigint >= $1"


async def _rows_written(pool: asyncpg.Pool[Any], since: int) -> int:
    """Read-model rows written (inserted or updated) by transactions from `since` on."""
    tables = await pool.fetch(
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace "
        "AND relname LIKE 'rm\\_%' AND relname NOT LIKE '%\\_\\_v%'"
    )
    return sum([await pool.fetchval(_WRITTEN.format(table=t["relname"]), since) for t in tables])


async def _queries(pool: asyncpg.Pool[Any], account_id: UUID, sql: str, name: str) -> list[float]:
    """GetOrders' first page for `name`, `QUERIES` times; each time in ms."""
    times: list[float] = []
    params = GetOrders(customer_name=name)
    for _ in range(QUERIES):
        started = time.perf_counter()
        async with tenant_transaction(pool, account_id) as connection:
            page = await get_orders(connection, params, sql)
        times.append((time.perf_counter() - started) * 1000)
        if not page.items:
            raise RuntimeError(f"GetOrders found no orders of {name!r}")
    return times


async def report_fan_out(orders: int, json_path: str | None) -> None:
    """Run the fan-out bench on this machine's Postgres and Redis (databases of its own), print its
    table, and write it to `json_path` if given."""
    from rich.console import Console
    from rich.table import Table

    from erp.bench.snapshots import cold_orders

    settings = Settings()
    console = Console()
    console.print(f"seeding one customer with {orders:,} orders, then a rename under each strategy ...")
    result = await fan_out_bench(settings.database_url, settings.redis_url, orders)
    cold = await cold_orders(settings.database_url, reservations=orders, without=2, with_snapshots=100)
    table = Table(title=f"a rename of a customer with {orders:,} orders (erp bench --fan-out)")
    columns = ("strategy", "rename -> consistent (quiet / loaded)", "rows written",
               "GetOrders big p50/p99", "GetOrders ordinary p50/p99", "others' notification p99")  # fmt: skip
    for column in columns:
        table.add_column(column)
    for m in result.measured:
        table.add_row(
            m.strategy,
            f"{m.consistent_ms:,.1f} / {m.loaded_consistent_ms:,.1f} ms",
            f"{m.rows_written:,}",
            f"{m.big_p50_ms:.1f} / {m.big_p99_ms:.1f} ms",
            f"{m.ordinary_p50_ms:.1f} / {m.ordinary_p99_ms:.1f} ms",
            f"{m.others_p99_ms:.1f} ms ({m.others})",
        )
    console.print(table)
    console.print(
        f"cold PlaceOrder for that customer ({cold.reservations:,} reservations on its stream): "
        f"p99 {cold.with_p99_ms:.1f} ms with snapshots (p50 {cold.with_p50_ms:.1f}), "
        f"p50 {cold.without_p50_ms:,.0f} ms without"
    )
    if json_path is not None:
        document = {
            "orders": orders,
            "strategies": [m.__dict__ for m in result.measured],
            "cold_place_order": {
                "reservations": cold.reservations,
                "with_snapshots_p50_ms": cold.with_p50_ms,
                "with_snapshots_p99_ms": cold.with_p99_ms,
                "without_snapshots_p50_ms": cold.without_p50_ms,
            },
        }
        Path(json_path).write_text(json.dumps(document, indent=2))  # noqa: ASYNC240
