"""The model language and the ERP model's aggregates and rules, without I/O."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
import pytest

from commands.erp_model import ERP
from commands.errors import BusinessRuleViolation, StreamNotFound
from commands.handlers import command_specs
from commands.model import Attr, Change, CommandDecl, Element, EventDecl, Kind, Model, ModelAggregate, Type
from commands.store.event_store import CommandMetadata, StreamWrite
from commands.stream_cache import StreamCache
from commands.unit_of_work import UnitOfWork
from tests.memory_store import NO_SQL, MemoryEventStore

SPECS = command_specs(ERP)


ACCOUNT = UUID(int=1)


def metadata() -> CommandMetadata:
    command_id = uuid.uuid4()
    return CommandMetadata(command_id, command_id, command_id)


async def run(store: MemoryEventStore, name: str, **fields: Any) -> ModelAggregate:
    """Decide a command on the in-memory store and commit what every touched aggregate raised."""
    spec = SPECS[name]
    command = msgspec.convert(fields, spec.message)
    uow = UnitOfWork(NO_SQL, ACCOUNT, store, StreamCache(), trust_cache=False)  # type: ignore[arg-type]
    aggregate = await spec.handler(command, uow)
    await uow.commit(metadata())
    assert isinstance(aggregate, ModelAggregate)
    return aggregate


def lines(*priced: tuple[int, str]) -> list[dict[str, Any]]:
    return [{"ProductCode": f"P{i}", "Quantity": q, "UnitPrice": p} for i, (q, p) in enumerate(priced)]


async def customer_with_limit(store: MemoryEventStore, limit: str) -> str:
    person, workarea, customer = (str(uuid.uuid4()) for _ in range(3))
    await run(store, "RegisterPerson", PersonId=person, Name="Ada")
    await run(store, "CreateWorkarea", WorkareaId=workarea, Name="North")
    await run(
        store, "MakeCustomer", CustomerId=customer, PartyId=person, WorkareaId=workarea, SpendingLimit=limit
    )
    return customer


async def test_place_order_totals_the_lines() -> None:
    order = await run(
        MemoryEventStore(),
        "PlaceOrder",
        OrderId=str(uuid.uuid4()),
        CustomerName="Linus",
        OrderLines=lines((2, "10.00"), (3, "0.05")),
    )
    assert order.state["Total"] == "20.15"
    assert order.status == "Placed"


async def test_only_a_placed_order_can_be_cancelled() -> None:
    store = MemoryEventStore()
    order_id = str(uuid.uuid4())
    with pytest.raises(StreamNotFound):
        await run(store, "CancelOrder", OrderId=order_id, Reason="x")
    await run(store, "PlaceOrder", OrderId=order_id, CustomerName="L", OrderLines=lines((1, "1.00")))
    cancelled = await run(store, "CancelOrder", OrderId=order_id, Reason="changed my mind")
    assert (cancelled.status, cancelled.state["CancelReason"]) == ("Cancelled", "changed my mind")
    with pytest.raises(BusinessRuleViolation, match="needs it to be Placed"):
        await run(store, "CancelOrder", OrderId=order_id, Reason="again")
    assert [e.name for e in store.streams(ACCOUNT)[f"Order-{order_id}"]] == ["OrderPlaced", "OrderCancelled"]


async def test_placing_twice_is_refused() -> None:
    store = MemoryEventStore()
    order_id = str(uuid.uuid4())
    await run(store, "PlaceOrder", OrderId=order_id, CustomerName="L", OrderLines=lines((1, "1.00")))
    with pytest.raises(BusinessRuleViolation, match="already exists"):
        await run(store, "PlaceOrder", OrderId=order_id, CustomerName="L", OrderLines=lines((1, "1.00")))


async def test_the_spending_limit_counts_open_orders_until_paid_or_cancelled() -> None:
    store = MemoryEventStore()
    customer = await customer_with_limit(store, "100.00")
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    await run(
        store,
        "PlaceOrder",
        OrderId=first,
        CustomerName="Ada",
        CustomerId=customer,
        OrderLines=lines((6, "10.00")),
    )
    with pytest.raises(BusinessRuleViolation) as refused:
        await run(
            store,
            "PlaceOrder",
            OrderId=second,
            CustomerName="Ada",
            CustomerId=customer,
            OrderLines=lines((5, "10.00")),
        )
    assert "100.00" in str(refused.value) and "60.00" in str(refused.value)
    assert f"Order-{second}" not in store.streams(ACCOUNT)

    invoice = str(uuid.uuid4())
    await run(store, "InvoiceOrder", InvoiceId=invoice, OrderId=first)
    await run(store, "PayInvoice", InvoiceId=invoice)
    placed = await run(
        store,
        "PlaceOrder",
        OrderId=second,
        CustomerName="Ada",
        CustomerId=customer,
        OrderLines=lines((10, "10.00")),
    )
    assert placed.status == "Placed"
    names = [e.name for e in store.streams(ACCOUNT)[f"Customer-{customer}"]]
    assert names == ["CustomerMade", "AmountReserved", "AmountReleased", "AmountReserved"]


async def test_cancelling_gives_the_amount_back() -> None:
    store = MemoryEventStore()
    customer = await customer_with_limit(store, "50.00")
    order = str(uuid.uuid4())
    await run(
        store,
        "PlaceOrder",
        OrderId=order,
        CustomerName="Ada",
        CustomerId=customer,
        OrderLines=lines((5, "10.00")),
    )
    await run(store, "CancelOrder", OrderId=order, Reason="no")
    again = await run(
        store,
        "PlaceOrder",
        OrderId=str(uuid.uuid4()),
        CustomerName="Ada",
        CustomerId=customer,
        OrderLines=lines((5, "10.00")),
    )
    assert again.status == "Placed"


async def test_change_address_finds_a_person_or_an_organisation() -> None:
    store = MemoryEventStore()
    organisation = str(uuid.uuid4())
    await run(store, "RegisterOrganisation", OrganisationId=organisation, Name="ACME")
    address = {"Kind": "Visit", "Street": "Main 1", "City": "Leusden", "Country": "NL"}
    changed = await run(store, "ChangeAddress", PartyId=organisation, Address=address)
    assert changed.element.name == "Organisation"
    assert changed.state["Addresses"] == [address]
    with pytest.raises(StreamNotFound, match="Person or Organisation"):
        await run(store, "ChangeAddress", PartyId=str(uuid.uuid4()), Address=address)


async def test_make_customer_needs_an_existing_party_and_workarea() -> None:
    store = MemoryEventStore()
    with pytest.raises(BusinessRuleViolation, match="party"):
        await run(
            store,
            "MakeCustomer",
            CustomerId=str(uuid.uuid4()),
            PartyId=str(uuid.uuid4()),
            WorkareaId=str(uuid.uuid4()),
            SpendingLimit="1.00",
        )


async def test_delivery_and_invoice_follow_the_order() -> None:
    store = MemoryEventStore()
    workarea, order = str(uuid.uuid4()), str(uuid.uuid4())
    await run(store, "CreateWorkarea", WorkareaId=workarea, Name="South")
    await run(store, "PlaceOrder", OrderId=order, CustomerName="L", OrderLines=lines((1, "3.00")))
    await run(store, "DeliverOrder", DeliveryId=str(uuid.uuid4()), OrderId=order, WorkareaId=workarea)
    invoice = await run(store, "InvoiceOrder", InvoiceId=str(uuid.uuid4()), OrderId=order)
    assert (invoice.status, invoice.state["Amount"]) == ("Open", "3.00")
    with pytest.raises(BusinessRuleViolation, match="needs it to be Placed"):
        await run(store, "CancelOrder", OrderId=order, Reason="too late")


async def test_replay_gives_the_state_deciding_gave() -> None:
    element = ERP.elements["Customer"]
    aggregate = ERP.aggregates["Customer"]("Customer-1")
    aggregate.raise_event(
        "CustomerMade",
        {
            "CustomerId": str(uuid.uuid4()),
            "PartyId": str(uuid.uuid4()),
            "WorkareaId": str(uuid.uuid4()),
            "SpendingLimit": "9.00",
        },
    )
    aggregate.raise_event(
        "AmountReserved", {"CustomerId": str(uuid.uuid4()), "OrderId": str(uuid.uuid4()), "Amount": "2.50"}
    )
    store = MemoryEventStore()
    write = StreamWrite(
        aggregate.stream_id, aggregate.stream_type, aggregate.revision, aggregate.pending_events()
    )
    await store.append(NO_SQL, ACCOUNT, [write], metadata())
    replayed = ERP.aggregates[element.name]("Customer-1")
    replayed.replay(store.streams(ACCOUNT)["Customer-1"])
    assert replayed.state == aggregate.state
    assert Decimal(replayed.state["OpenAmount"]) == Decimal("2.50")


def test_a_model_refuses_a_command_raising_a_foreign_event() -> None:
    thing = Element(
        "Thing",
        Kind.ENTITY,
        (Attr("ThingId", Type.ID),),
        commands=(
            CommandDecl("MakeThing", (Attr("ThingId", Type.ID),), "Nope", key="ThingId", creates=True),
        ),
        events=(EventDecl("ThingMade", (Attr("ThingId", Type.ID),), Change(creates=True)),),
    )
    with pytest.raises(ValueError, match="not an event of Thing"):
        Model([thing])
