"""What read models show of other elements, served as the ERP declares it (`commands.erp_model.read_models`),
against the real Postgres: a rename is visible in every read model that shows it (copied, combined
and joined), a consistency wait is not past it until the fan-out is done, a fan-out whose process is
killed halfway goes on where it was and ends equal to a rebuild, and the copies that live in one read
model follow their source within its transaction."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
import pytest

from commands.erp_model import ERP
from commands.service import CommandResult, CommandService
from commands.store.event_store import EventStore
from commands.store.feed import EventFeed, RecordedEvent
from core.db import create_pool
from core.settings import Settings
from erp.devserver import drop_database
from queries import fan_out_jobs
from queries.blue_green import Build
from queries.chained import ChainedFollower
from queries.model_projection import ModelProjection
from queries.projector import Projector
from queries.projector.fan_out import FanOut
from queries.registry import CHAINED, PROJECTIONS, SHOWS
from queries.views import QUERIES, GetCustomer, GetCustomers, GetDeliveries, GetOpenInvoices, GetOrders
from tenancy.rls import tenant_transaction
from tests.conftest import fresh_database, make_account

pytestmark = pytest.mark.timeout(180)

ORDERS = PROJECTIONS["orders"]


def new_id() -> str:
    return str(uuid.uuid4())


async def run(service: CommandService, account_id: UUID, command: str, body: dict[str, Any]) -> CommandResult:
    return await service.execute(account_id, service.parse(command, json.dumps(body).encode()))


async def project(pool: asyncpg.Pool[Any], *names: str, fan_out: bool = True) -> None:
    """The named projections (all by default) caught up, and then (unless told not to) their fan-outs."""
    for name in names or PROJECTIONS:
        await Projector(pool, PROJECTIONS[name], EventFeed()).catch_up()
    if fan_out:
        for projection in PROJECTIONS.values():
            await FanOut(pool, projection, None).drain()


async def query(pool: asyncpg.Pool[Any], account_id: UUID, name: str, params: Any) -> list[dict[str, Any]]:
    """The query's items as a client reads them (its JSON)."""
    async with tenant_transaction(pool, account_id) as connection:
        page = await QUERIES[name].run(connection, params)
    items: list[dict[str, Any]] = msgspec.json.decode(msgspec.json.encode(page.items))
    return items


@pytest.fixture
async def database() -> AsyncIterator[tuple[asyncpg.Pool[Any], str]]:
    """A database of the test's own, and its URL (for a process of its own)."""
    url = await fresh_database()
    pool = await create_pool(Settings(database_url=url), min_size=1, max_size=4)
    try:
        yield pool, url
    finally:
        await pool.close()
        await drop_database(url)


class Shop:
    """One account with a person and an organisation as customers, orders, an invoice, a delivery."""

    def __init__(self, pool: asyncpg.Pool[Any], account_id: UUID) -> None:
        self.pool = pool
        self.account_id = account_id
        self.service = CommandService(pool, EventStore())
        self.person, self.organisation, self.workarea = new_id(), new_id(), new_id()
        self.customers: dict[str, str] = {}
        self.orders: dict[str, list[str]] = {}

    async def run(self, command: str, body: dict[str, Any]) -> CommandResult:
        return await run(self.service, self.account_id, command, body)

    async def set_up(self, orders: int = 3) -> None:
        await self.run("CreateWorkarea", {"WorkareaId": self.workarea, "Name": "North"})
        await self.run("RegisterPerson", {"PersonId": self.person, "Name": "Ada"})
        await self.run("RegisterOrganisation", {"OrganisationId": self.organisation, "Name": "Acme"})
        address = {"Kind": "Billing", "Street": "1 Main St", "City": "Leeds", "Country": "GB"}
        await self.run("ChangeAddress", {"PartyId": self.person, "Address": address})
        for party in (self.person, self.organisation):
            customer = self.customers[party] = new_id()
            body = {"CustomerId": customer, "PartyId": party, "WorkareaId": self.workarea}
            await self.run("MakeCustomer", {**body, "SpendingLimit": "1000000.00"})
            self.orders[customer] = [await self.order(customer) for _ in range(orders)]
        self.orders[""] = [await self.order(None, "Ada") for _ in range(2)]

    async def order(self, customer: str | None, name: str = "As placed") -> str:
        order_id = new_id()
        lines = [{"ProductCode": "P", "Quantity": 1, "UnitPrice": "1.00"}]
        body = {"OrderId": order_id, "CustomerName": name, "OrderLines": lines}
        await self.run("PlaceOrder", {**body, **({"CustomerId": customer} if customer else {})})
        return order_id

    async def names(self, name: str) -> list[str]:
        """The names GetOrders shows for the orders it finds under `name`."""
        items = await query(
            self.pool, self.account_id, "GetOrders", GetOrders(customer_name=name, limit=1000)
        )
        return [i["CustomerName"] for i in items]


async def orders_position(pool: asyncpg.Pool[Any], account_id: UUID, stream_type: str) -> int:
    scope = ORDERS.scope
    reached = await fan_out_jobs.positions(pool, scope.owners, scope.fan_outs, account_id, [stream_type])
    return reached[stream_type]


async def test_a_rename_is_visible_in_every_read_model_that_shows_the_name(
    own_pool: asyncpg.Pool[Any],
) -> None:
    pool = own_pool
    shop = Shop(pool, await make_account(pool))
    await shop.set_up()
    ada = shop.customers[shop.person]
    invoice, delivery = new_id(), new_id()
    await shop.run("InvoiceOrder", {"InvoiceId": invoice, "OrderId": shop.orders[ada][0]})
    delivered = {"DeliveryId": delivery, "OrderId": shop.orders[ada][1], "WorkareaId": shop.workarea}
    await shop.run("DeliverOrder", delivered)
    await project(pool)
    assert await shop.names("Ada") == ["Ada"] * 5  # three of the customer's, two placed with the name

    renamed = await shop.run("RenamePerson", {"PersonId": shop.person, "Name": "Ada King"})
    await project(pool, "customers", fan_out=False)
    # Copied within the customers read model: in the transaction that projected the rename.
    customers = await query(pool, shop.account_id, "GetCustomers", GetCustomers())
    assert [c["Name"] for c in customers] == ["Acme", "Ada King"]
    # Combined: invoices read the customers' table, which has the name now.
    invoices = await query(pool, shop.account_id, "GetOpenInvoices", GetOpenInvoices())
    assert [i["CustomerName"] for i in invoices] == ["Ada King"]
    # Copied onto the orders by a fan-out not yet run: the orders read model is not past the rename.
    assert await orders_position(pool, shop.account_id, "Person") < renamed.positions["Person"]
    assert await shop.names("Ada King") == []
    assert await FanOut(pool, ORDERS, None).drain() == 3
    assert await orders_position(pool, shop.account_id, "Person") >= renamed.positions["Person"]
    assert await shop.names("Ada King") == ["Ada King"] * 3
    assert await shop.names("Ada") == ["Ada"] * 2  # placed with that name, with no customer
    # Combined through the orders' copy: deliveries show it once the orders do.
    deliveries = await query(
        pool, shop.account_id, "GetDeliveries", GetDeliveries(workarea_id=UUID(shop.workarea))
    )
    assert [d["CustomerName"] for d in deliveries] == ["Ada King"]
    # Joined: the party's addresses, read from its own table.
    (customer,) = await query(pool, shop.account_id, "GetCustomer", GetCustomer(customer_id=UUID(ada)))
    assert customer["Name"] == "Ada King" and customer["Addresses"][0]["City"] == "Leeds"


async def test_a_customer_projected_before_its_party_and_orders_before_their_customer_get_the_name(
    own_pool: asyncpg.Pool[Any],
) -> None:
    """Read models apply their stream types in any order: whichever row is written first, the copies
    end up equal to their sources."""
    pool = own_pool
    shop = Shop(pool, await make_account(pool))
    await shop.set_up()
    await project(pool, "orders", fan_out=False)
    await project(pool, "customers", fan_out=False)
    assert await shop.names("Acme") == []  # the orders were written before their customers
    await project(pool)
    assert await shop.names("Acme") == ["Acme"] * 3


KILLABLE = """
import asyncio, sys
from core.db import create_pool
from core.settings import Settings
from queries.projector import fan_out
from queries.registry import CHAINED, PROJECTIONS, SHOWS

async def main() -> None:
    fan_out.FIRST_CHUNK = fan_out.MAX_CHUNK = 100
    fan_out.CHUNK_SECONDS = 1000.0
    pool = await create_pool(Settings(database_url=sys.argv[1]), min_size=1, max_size=2)
    runner = fan_out.FanOut(pool, PROJECTIONS["orders"], None)
    while await runner.run_chunk():
        print("chunk", flush=True)
        await asyncio.sleep(0.05)

asyncio.run(main())
"""


async def test_a_fan_out_killed_halfway_goes_on_where_it_was_and_equals_a_rebuild(
    database: tuple[asyncpg.Pool[Any], str],
) -> None:
    pool, url = database
    shop = Shop(pool, await make_account(pool))
    await shop.set_up(orders=1_000)
    await project(pool)
    await shop.run("RenameOrganisation", {"OrganisationId": shop.organisation, "Name": "Acme Renamed"})
    await project(pool, "customers", fan_out=False)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLABLE, url, stdout=subprocess.PIPE, env={**os.environ}
    )
    assert child.stdout is not None
    for _ in range(3):
        assert await asyncio.wait_for(child.stdout.readline(), 30) == b"chunk\n"
    child.send_signal(signal.SIGKILL)  # in its fourth chunk's transaction, or between two
    await child.wait()
    job = await pool.fetchrow("SELECT rows, cursor_id FROM fan_out_jobs WHERE projection = 'orders'")
    assert job is not None and job["cursor_id"] is not None and 300 <= job["rows"] < 1_000
    assert 300 <= len(await shop.names("Acme Renamed")) < 1_000

    assert await FanOut(pool, ORDERS, None).drain() == 1_000 - job["rows"]
    assert await shop.names("Acme Renamed") == ["Acme Renamed"] * 1_000
    assert not await pool.fetchval("SELECT count(*) FROM fan_out_jobs")
    live = await pool.fetch("SELECT * FROM rm_order ORDER BY id")
    build = await Build.prepare(pool, ORDERS, EventFeed())
    await build.bulk_pass()
    await build.catch_up()
    rebuilt = await pool.fetch(f"SELECT * FROM {build.shadow.tables[0]} ORDER BY id")
    assert [dict(r) for r in rebuilt] == [dict(r) for r in live]


async def test_a_second_rename_during_a_fan_out_starts_it_over_and_keeps_the_first_position(
    own_pool: asyncpg.Pool[Any],
) -> None:
    pool = own_pool
    shop = Shop(pool, await make_account(pool))
    await shop.set_up(orders=50)
    await project(pool)
    first = await shop.run("RenameOrganisation", {"OrganisationId": shop.organisation, "Name": "First"})
    await project(pool, "customers", fan_out=False)
    runner = FanOut(pool, ORDERS, None)
    runner.chunk = 20
    assert await runner.run_chunk()
    await shop.run("RenameOrganisation", {"OrganisationId": shop.organisation, "Name": "Second"})
    await project(pool, "customers", fan_out=False)
    job = await pool.fetchrow("SELECT position, cursor_id FROM fan_out_jobs WHERE projection = 'orders'")
    assert job is not None and job["cursor_id"] is None and job["position"] == first.positions["Organisation"]
    await runner.drain()
    assert await shop.names("Second") == ["Second"] * 50
    assert await shop.names("First") == []


RENAMES = 40


class SlowOrders(ModelProjection):
    """The orders read model, holding each batch open a random while after applying it: a batch that
    read a customer's name before a rename commits after the rename, and after fan-out chunks."""

    async def apply(self, connection: asyncpg.Connection[Any], events: Sequence[RecordedEvent]) -> Any:
        unknown = await super().apply(connection, events)
        await asyncio.sleep(random.uniform(0, 0.05))
        return unknown


async def test_copies_end_equal_to_their_source_with_writers_renames_and_fan_outs_racing(
    own_pool: asyncpg.Pool[Any],
) -> None:
    pool = own_pool
    shop = Shop(pool, await make_account(pool))
    await shop.set_up(orders=5)
    customer = shop.customers[shop.organisation]
    slow = SlowOrders("orders", ERP, ["Order"], shows=SHOWS)
    stop = asyncio.Event()

    async def place() -> None:
        while not stop.is_set():
            await shop.order(customer)

    async def rename() -> None:
        for n in range(RENAMES):
            await shop.run("RenameOrganisation", {"OrganisationId": shop.organisation, "Name": f"Acme {n}"})
            await asyncio.sleep(random.uniform(0, 0.05))

    async def keep(projector: Projector | FanOut) -> None:
        while not stop.is_set():
            worked = await (projector.run_chunk() if isinstance(projector, FanOut) else projector.run_batch())
            if not worked:
                await asyncio.sleep(0.005)

    runners = [
        asyncio.create_task(keep(p))
        for p in (
            Projector(pool, slow, EventFeed(), batch_size=20),
            Projector(pool, PROJECTIONS["customers"], EventFeed(), batch_size=20),
            FanOut(pool, ORDERS, None),
            FanOut(pool, ORDERS, None),
        )
    ]
    writers = [asyncio.create_task(place()) for _ in range(2)]
    await rename()
    stop.set()
    await asyncio.gather(*writers, *runners)
    await project(pool)
    names = await pool.fetch(
        "SELECT DISTINCT party_name FROM rm_order WHERE account_id = $1 AND customer_id = $2",
        shop.account_id,
        UUID(customer),
    )
    assert [r["party_name"] for r in names] == [f"Acme {RENAMES - 1}"]


async def open_amounts(pool: asyncpg.Pool[Any], account_id: UUID) -> list[tuple[UUID, int, Decimal]]:
    rows = await pool.fetch(
        "SELECT id, rows, open_amount FROM rm_open_amounts WHERE account_id = $1 ORDER BY id", account_id
    )
    return [(r["id"], r["rows"], r["open_amount"]) for r in rows]


async def test_a_chained_read_model_follows_the_customers_and_equals_its_rebuild(
    own_pool: asyncpg.Pool[Any],
) -> None:
    """What each workarea's customers have open, taken from the changes the customers read model
    makes (every order reserves on its customer), with its own checkpoint; rebuilt from the
    customers' rows, it is the same."""
    pool = own_pool
    shop = Shop(pool, await make_account(pool))
    await shop.set_up(orders=4)
    south = new_id()
    await shop.run("CreateWorkarea", {"WorkareaId": south, "Name": "South"})
    third = new_id()
    await shop.run(
        "MakeCustomer",
        {"CustomerId": third, "PartyId": shop.person, "WorkareaId": south, "SpendingLimit": "50.00"},
    )
    for _ in range(3):
        await shop.order(third)
    cancelled = shop.orders[shop.customers[shop.person]][0]
    await shop.run("CancelOrder", {"OrderId": cancelled, "Reason": "changed their mind"})
    chained = ChainedFollower(CHAINED["open_amounts"], pool)
    await project(pool, "customers", fan_out=False)
    assert await chained.step()
    north = await open_amounts(pool, shop.account_id)
    assert sorted((n, str(a)) for _, n, a in north) == [(1, "3.00"), (2, "7.00")]
    checkpoint = (
        "SELECT position FROM projection_checkpoints WHERE projection = $1 AND stream_type = 'Customer'"
    )
    assert await pool.fetchval(checkpoint, "open_amounts") == await pool.fetchval(checkpoint, "customers")

    await shop.order(third)  # one more, taken as a change
    await project(pool, "customers", fan_out=False)
    assert await open_amounts(pool, shop.account_id) == north  # not before its own step
    await chained.step()
    incremental = await open_amounts(pool, shop.account_id)
    assert sorted(str(a) for _, _, a in incremental) == ["4.00", "7.00"]
    await chained.step(accounts=[shop.account_id])  # taking nothing new changes nothing
    assert await open_amounts(pool, shop.account_id) == incremental
    await CHAINED["open_amounts"].rebuild(pool, shop.account_id)
    assert await open_amounts(pool, shop.account_id) == incremental
