"""Snapshots of long streams against the real Postgres: a cold load reads the latest snapshot and the
events after it; a snapshot is only a cache (deleting every one changes no answer); a model change
that alters an element's state leaves its old snapshots unread; bad declarations fail when the model
is built."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import replace
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from commands.erp_model import ERP
from commands.erp_model.customer import CUSTOMER
from commands.errors import CommandError
from commands.handlers import command_specs
from commands.model import Attr, Change, EventDecl, Model, ModelAggregate
from commands.service import CommandService
from commands.store.event_store import EventStore
from commands.store.feed import Executor, RecordedEvent
from commands.store.snapshots import Snapshots
from commands.stream_cache import StreamCache
from commands.unit_of_work import UnitOfWork
from tests.conftest import make_account

EVERY = 5


def model_with(customer: Any) -> Model:
    return Model([customer if e.name == "Customer" else e for e in ERP.elements.values()])


SMALL = model_with(replace(CUSTOMER, snapshot_every=EVERY))
"""The ERP with a Customer snapshot every 5 events, so that a test makes several quickly."""


class CountingStore(EventStore):
    """Remembers from which revision each load read its stream."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[tuple[str, int]] = []

    async def load(
        self, executor: Executor, account_id: UUID, stream_id: str, after_revision: int = 0
    ) -> list[RecordedEvent]:
        self.loads.append((stream_id, after_revision))
        return await super().load(executor, account_id, stream_id, after_revision)


def service(
    pool: asyncpg.Pool[Any], model: Model = SMALL, store: EventStore | None = None, *, snapshots: bool = True
) -> CommandService:
    return CommandService(
        pool, store or EventStore(), command_specs(model), snapshots=Snapshots() if snapshots else None
    )


async def run(svc: CommandService, account_id: UUID, command: str, body: dict[str, Any]) -> Any:
    return await svc.execute(account_id, svc.parse(command, json.dumps(body).encode()))


async def customer_of(svc: CommandService, account_id: UUID, limit: str = "100000.00") -> str:
    person, workarea, customer = (str(uuid.uuid4()) for _ in range(3))
    await run(svc, account_id, "RegisterPerson", {"PersonId": person, "Name": "Ada"})
    await run(svc, account_id, "CreateWorkarea", {"WorkareaId": workarea, "Name": "North"})
    body = {"CustomerId": customer, "PartyId": person, "WorkareaId": workarea, "SpendingLimit": limit}
    await run(svc, account_id, "MakeCustomer", body)
    return customer


def order(customer: str, price: str = "1.00") -> dict[str, Any]:
    return {
        "OrderId": str(uuid.uuid4()),
        "CustomerId": customer,
        "CustomerName": "Ada",
        "OrderLines": [{"ProductCode": "P", "Quantity": 1, "UnitPrice": price}],
    }


async def loaded(
    pool: asyncpg.Pool[Any], account_id: UUID, customer: str, *, snapshots: bool
) -> ModelAggregate:
    """The Customer as a cold unit of work loads it (no stream cache)."""
    uow = UnitOfWork(pool, account_id, EventStore(), snapshots=Snapshots() if snapshots else None)
    return await uow.get(SMALL.aggregates["Customer"], f"Customer-{customer}")


async def test_a_cold_load_reads_the_latest_snapshot_and_the_events_after_it(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    writer = service(pool)
    customer = await customer_of(writer, account_id)
    for _ in range(22):  # the stream: CustomerMade, then 22 reservations (revision 23)
        await run(writer, account_id, "PlaceOrder", order(customer))
    row = await pool.fetchrow(
        "SELECT revision, shape, state FROM snapshots WHERE account_id = $1 AND stream_id = $2",
        account_id,
        f"Customer-{customer}",
    )
    assert (
        row is not None
        and row["revision"] == 20
        and row["shape"] == SMALL.aggregates["Customer"].snapshot_shape
    )
    assert row["state"]["OpenAmount"] == "19.00"

    store = CountingStore()
    cold = service(pool, store=store)  # another process: nothing cached
    await run(cold, account_id, "PlaceOrder", order(customer))
    assert (f"Customer-{customer}", 20) in store.loads, store.loads
    with_snapshot = await loaded(pool, account_id, customer, snapshots=True)
    replayed = await loaded(pool, account_id, customer, snapshots=False)
    assert with_snapshot.revision == replayed.revision == 24
    assert with_snapshot.state == replayed.state
    assert replayed.state["OpenAmount"] == "23.00"


async def test_deleting_every_snapshot_changes_no_answer(pool: asyncpg.Pool[Any]) -> None:
    """Two accounts are sent the same random commands; one keeps its snapshots, the other's are all
    deleted after every command (and every process is cold): every answer and the end state match."""
    accounts = [await make_account(pool), await make_account(pool)]
    customers = [await customer_of(service(pool), account_id, limit="40.00") for account_id in accounts]
    rng = random.Random(7)
    placed: list[list[str]] = [[], []]
    for step in range(60):
        roll = rng.random()
        price = f"{rng.randint(1, 9)}.00"
        answers = []
        for n, account_id in enumerate(accounts):
            cold = service(pool, snapshots=n == 0)  # a fresh process each time: no stream cache
            try:
                if roll < 0.7 or not placed[n]:
                    body = order(customers[n], price)
                    await run(cold, account_id, "PlaceOrder", body)
                    placed[n].append(body["OrderId"])
                    answers.append(("placed", step))
                else:
                    await run(cold, account_id, "CancelOrder", {"OrderId": placed[n].pop(0), "Reason": "r"})
                    answers.append(("cancelled", step))
            except CommandError as refused:
                answers.append((type(refused).__name__, str(refused).replace(customers[n], "C")))
            if n == 1:
                await pool.execute("DELETE FROM snapshots WHERE account_id = $1", account_id)
        assert answers[0] == answers[1], f"step {step}"
    states = [await loaded(pool, a, c, snapshots=True) for a, c in zip(accounts, customers, strict=True)]
    assert await pool.fetchval("SELECT count(*) FROM snapshots WHERE account_id = $1", accounts[0]) == 1
    ids = {"CustomerId", "PartyId", "WorkareaId"}  # each account's own
    assert states[0].revision == states[1].revision
    assert {k: v for k, v in states[0].state.items() if k not in ids} == {
        k: v for k, v in states[1].state.items() if k not in ids
    }


async def test_a_model_change_to_an_elements_state_leaves_its_snapshots_unread(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    writer = service(pool)
    customer = await customer_of(writer, account_id)
    for _ in range(6):
        await run(writer, account_id, "PlaceOrder", order(customer))
    changed = model_with(
        replace(
            CUSTOMER,
            snapshot_every=EVERY,
            attributes=(*CUSTOMER.attributes, Attr("Rating", required=False)),
            events=(
                *CUSTOMER.events,
                EventDecl("Rated", (Attr("CustomerId"), Attr("Rating")), Change(set=("Rating",))),
            ),
        )
    )
    assert changed.aggregates["Customer"].snapshot_shape != SMALL.aggregates["Customer"].snapshot_shape
    assert model_with(replace(CUSTOMER, snapshot_every=EVERY)).aggregates["Customer"].snapshot_shape == (
        SMALL.aggregates["Customer"].snapshot_shape
    ), "the same model, built again, must read its snapshots"
    store = CountingStore()
    uow = UnitOfWork(pool, account_id, store, snapshots=Snapshots())
    aggregate = await uow.get(changed.aggregates["Customer"], f"Customer-{customer}")
    assert store.loads == [(f"Customer-{customer}", 0)], "a snapshot of another shape was read"
    assert aggregate.state["OpenAmount"] == "6.00"


async def test_a_cached_long_stream_is_kept_from_its_snapshot(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """In the stream cache, a stream starts again from each snapshot: a hot customer with many
    orders weighs its last few events, not all of them."""
    cache = StreamCache()
    svc = CommandService(pool, EventStore(), command_specs(SMALL), cache=cache, snapshots=Snapshots())
    customer = await customer_of(svc, account_id)
    for _ in range(12):
        await run(svc, account_id, "PlaceOrder", order(customer))
    history = cache.get(account_id, f"Customer-{customer}")
    assert history is not None and history[0].name == "$snapshot" and history[0].stream_revision == 10
    assert [e.stream_revision for e in history] == [10, 11, 12, 13]


def test_bad_snapshot_declarations_fail_when_the_model_is_built() -> None:
    with pytest.raises(ValueError, match=r"Customer\.snapshot_every must be at least 2"):
        model_with(replace(CUSTOMER, snapshot_every=1))
    person = ERP.elements["Person"]
    with pytest.raises(ValueError, match="Person has personal attributes"):
        Model([replace(person, snapshot_every=100) if e is person else e for e in ERP.elements.values()])


async def test_a_long_stream_that_grew_without_snapshots_gets_one_when_first_loaded(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """A stream written before its element had snapshots (or under another shape): the first cold
    load that replays `snapshot_every` events or more leaves one, and the next reads it."""
    before = service(pool, snapshots=False)
    customer = await customer_of(before, account_id)
    for _ in range(13):
        await run(before, account_id, "PlaceOrder", order(customer))
    assert not await pool.fetchval("SELECT count(*) FROM snapshots WHERE account_id = $1", account_id)
    first = await loaded(pool, account_id, customer, snapshots=True)
    assert first.revision == 14
    store = CountingStore()
    uow = UnitOfWork(pool, account_id, store, snapshots=Snapshots())
    again = await uow.get(SMALL.aggregates["Customer"], f"Customer-{customer}")
    assert store.loads == [(f"Customer-{customer}", 14)]
    assert again.state == first.state
