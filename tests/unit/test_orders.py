"""The Order aggregate and the @event mechanism, without I/O."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest

from commands.aggregate import Aggregate, DomainEvent, event
from commands.errors import BusinessRuleViolation, StreamNotFound
from commands.event_store import RecordedEvent
from commands.orders import CancelOrder, Order, OrderCancelled, OrderLine, OrderPlaced, PlaceOrder


def place(order_id: uuid.UUID, *lines: tuple[int, str]) -> PlaceOrder:
    return PlaceOrder(
        order_id=order_id,
        customer_name="Linus Torvalds",
        order_lines=[
            OrderLine(product_code=f"P{i}", quantity=q, unit_price=Decimal(p))
            for i, (q, p) in enumerate(lines)
        ],
    )


def stored(order: Order) -> list[RecordedEvent]:
    """What the store would hand back for the order's pending events."""
    return [
        RecordedEvent(
            account_id=uuid.uuid4(),
            stream_id=order.stream_id,
            stream_type=order.stream_type,
            stream_revision=revision,
            sequence_number=revision,
            name=pending.name,
            payload=msgspec.json.decode(msgspec.json.encode(pending.payload)),
            commit_time=datetime.now(UTC),
            command_id=uuid.uuid4(),
            trace_context={},
        )
        for revision, pending in enumerate(order.pending_events(), start=order.revision + 1)
    ]


def test_place_totals_lines_and_raises_order_placed() -> None:
    order_id = uuid.uuid4()
    order = Order(Order.stream_for(order_id))
    order.place(place(order_id, (2, "10.00"), (3, "0.05")))
    [pending] = order.pending_events()
    assert pending.name == "OrderPlaced"
    assert pending.payload["Total"] == "20.15"
    assert pending.payload["OrderLines"][0] == {"ProductCode": "P0", "Quantity": 2, "UnitPrice": "10.00"}
    assert order.status == "Placed"


def test_replay_rebuilds_the_same_state_as_deciding() -> None:
    order_id = uuid.uuid4()
    decided = Order(Order.stream_for(order_id))
    decided.place(place(order_id, (1, "5.00")))
    history = stored(decided)
    replayed = Order(decided.stream_id)
    replayed.replay(history)
    assert (replayed.status, replayed.total, replayed.revision) == ("Placed", Decimal("5.00"), 1)
    assert replayed.pending_events() == []


def test_placing_twice_is_refused() -> None:
    order_id = uuid.uuid4()
    order = Order(Order.stream_for(order_id))
    order.place(place(order_id, (1, "1.00")))
    with pytest.raises(BusinessRuleViolation, match="already placed"):
        order.place(place(order_id, (1, "1.00")))


def test_only_a_placed_order_can_be_cancelled() -> None:
    order_id = uuid.uuid4()
    order = Order(Order.stream_for(order_id))
    with pytest.raises(StreamNotFound):
        order.cancel(CancelOrder(order_id=order_id, reason="x"))
    order.place(place(order_id, (1, "1.00")))
    order.cancel(CancelOrder(order_id=order_id, reason="changed my mind"))
    assert order.status == "Cancelled"
    with pytest.raises(BusinessRuleViolation, match="only a Placed order"):
        order.cancel(CancelOrder(order_id=order_id, reason="again"))
    assert [p.name for p in order.pending_events()] == ["OrderPlaced", "OrderCancelled"]


def test_a_refused_command_raises_nothing() -> None:
    order_id = uuid.uuid4()
    order = Order(Order.stream_for(order_id))
    with pytest.raises(StreamNotFound):
        order.cancel(CancelOrder(order_id=order_id, reason="x"))
    assert order.pending_events() == []


def test_every_event_type_has_exactly_one_applier() -> None:
    assert set(Order.event_types()) == {OrderPlaced, OrderCancelled}


def test_event_decorator_rejects_a_method_without_an_event_argument() -> None:
    with pytest.raises(TypeError, match="DomainEvent"):

        class Broken(Aggregate):
            stream_type = "Broken"

            @event
            def _changed(self, value: int) -> None:  # type: ignore[type-var]
                pass


class Renamed(DomainEvent, frozen=True):
    name: str


class Thing(Aggregate):
    stream_type = "Thing"
    name = ""

    def rename(self, name: str) -> None:
        self._renamed(Renamed(name=name))

    @event
    def _renamed(self, e: Renamed) -> None:
        self.name = e.name.upper()


def test_raising_an_event_runs_its_apply_and_records_it() -> None:
    thing = Thing("Thing-1")
    thing.rename("a")
    assert thing.name == "A"
    assert thing.pending_events()[0].payload == {"Name": "a"}
