"""The bench's snapshot line: `PlaceOrder` for a customer whose stream holds 1,000,000 reservations,
each from a cold process (no stream cache: an API restarted, or another replica), with and without
snapshots (`commands.model.snapshots`).

In a database of its own on the bench's Postgres: a customer made through the commands, then its
reservations written straight into its stream by COPY, as the store's append would have stored them
(`AmountReserved`, revision after revision, SequenceNumbers gapless after the account's), its open
amount within its limit. Then `PlaceOrder` for it, each through a new `CommandService` with no stream
cache: a few without snapshots (each replays the whole stream), then with them (the first replays it
once and leaves a snapshot; the rest read the snapshot and the events after it).
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from commands.erp_model import ERP, UPCASTERS
from commands.service import CommandService
from commands.store.event_store import EventStore
from commands.store.snapshots import Snapshots
from erp.bench.report import percentile
from erp.bench.seed import ADVANCE_COUNTER, EVENT_COLUMNS, SCOPE, account_database, random_ids
from tenancy.fences import write_unfenced

CUSTOMER = ERP.elements["Customer"]
RESERVATIONS = 1_000_000
_ADVANCE_STREAM = "UPDATE streams SET revision = revision + $3 WHERE account_id = $1 AND stream_id = $2"


@dataclass(frozen=True, slots=True)
class ColdOrders:
    reservations: int
    without_ms: list[float]
    """Each cold PlaceOrder's answer time without snapshots."""
    with_ms: list[float]
    """The same with snapshots, the first (which leaves the snapshot) left out."""
    first_with_ms: float

    @property
    def without_p50_ms(self) -> float:
        return statistics.median(self.without_ms)

    @property
    def with_p50_ms(self) -> float:
        return statistics.median(self.with_ms)

    @property
    def with_p99_ms(self) -> float:
        return percentile(self.with_ms, 0.99)


async def cold_orders(
    database_url: str, reservations: int = RESERVATIONS, without: int = 2, with_snapshots: int = 100
) -> ColdOrders:
    """Cold PlaceOrders for one customer with `reservations` on its stream, in a database of its own
    beside `database_url`'s (dropped afterwards)."""
    async with account_database(database_url, "snapshots") as (_, pool, account_id):
        customer = await _customer(pool, account_id)
        await _reserve(pool, account_id, customer, reservations)
        slow = [await _cold_order(pool, account_id, customer, snapshots=False) for _ in range(without)]
        first = await _cold_order(pool, account_id, customer, snapshots=True)
        fast = [await _cold_order(pool, account_id, customer, snapshots=True) for _ in range(with_snapshots)]
    return ColdOrders(reservations, slow, fast, first)


def _service(pool: asyncpg.Pool[Any], *, snapshots: bool) -> CommandService:
    """A process just started: no stream cache."""
    return CommandService(pool, EventStore(UPCASTERS), snapshots=Snapshots() if snapshots else None)


async def _run(service: CommandService, account_id: UUID, command: str, body: dict[str, Any]) -> None:
    await service.execute(account_id, service.parse(command, json.dumps(body).encode()))


async def _customer(pool: asyncpg.Pool[Any], account_id: UUID) -> str:
    service = _service(pool, snapshots=True)
    person, workarea, customer = (str(uuid.uuid4()) for _ in range(3))
    await _run(service, account_id, "RegisterPerson", {"PersonId": person, "Name": "Big"})
    await _run(service, account_id, "CreateWorkarea", {"WorkareaId": workarea, "Name": "North"})
    body = {"CustomerId": customer, "PartyId": person, "WorkareaId": workarea, "SpendingLimit": "99999999.00"}
    await _run(service, account_id, "MakeCustomer", body)
    return customer


async def _reserve(
    pool: asyncpg.Pool[Any], account_id: UUID, customer: str, count: int, chunk: int = 100_000
) -> None:
    """`count` reservations of 0.01 on the customer's stream, as appends would have stored them."""
    stream_id = CUSTOMER.stream_id(UUID(customer))
    written = 0
    async with pool.acquire() as connection:
        while written < count:
            n = min(chunk, count - written)
            async with connection.transaction():
                await write_unfenced(connection, account_id)
                await connection.execute(SCOPE, str(account_id))
                revision = await connection.fetchval(
                    "SELECT revision FROM streams WHERE account_id = $1 AND stream_id = $2 FOR UPDATE",
                    account_id,
                    stream_id,
                )
                await connection.execute(_ADVANCE_STREAM, account_id, stream_id, n)
                last = await connection.fetchval(ADVANCE_COUNTER, account_id, CUSTOMER.stream_type, n)
                records = _reservations(account_id, customer, stream_id, revision, last - n + 1, n)
                await connection.copy_records_to_table("events", records=records, columns=EVENT_COLUMNS)
            written += n


def _reservations(
    account_id: UUID, customer: str, stream_id: str, revision: int, first: int, n: int
) -> Iterator[tuple[Any, ...]]:
    version = UPCASTERS.version("AmountReserved")
    for i, (order_id, command_id) in enumerate(zip(random_ids(n), random_ids(n), strict=True)):
        payload = msgspec.Raw(
            b'{"CustomerId":"%s","OrderId":"%s","Amount":"0.01"}' % (customer.encode(), order_id.encode())
        )
        yield (account_id, stream_id, revision + 1 + i, "AmountReserved", payload, CUSTOMER.stream_type,
               first + i, command_id, command_id, command_id, version)  # fmt: skip


async def _cold_order(pool: asyncpg.Pool[Any], account_id: UUID, customer: str, *, snapshots: bool) -> float:
    body = {
        "OrderId": str(uuid.uuid4()),
        "CustomerId": customer,
        "CustomerName": "Big",
        "OrderLines": [{"ProductCode": "P", "Quantity": 1, "UnitPrice": "1.00"}],
    }
    service = _service(pool, snapshots=snapshots)
    started = time.perf_counter()
    await _run(service, account_id, "PlaceOrder", body)
    return (time.perf_counter() - started) * 1000
