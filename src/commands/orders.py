"""Orders: the PlaceOrder and CancelOrder commands, their events and the Order aggregate."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated
from uuid import UUID

import msgspec

from commands.aggregate import Aggregate, DomainEvent, event
from commands.errors import BusinessRuleViolation, StreamNotFound
from commands.messages import Command, check_money

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class OrderLine(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="pascal"):
    """One line of an order."""

    product_code: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    quantity: Annotated[int, msgspec.Meta(gt=0, le=1_000_000)]
    unit_price: Decimal

    def __post_init__(self) -> None:
        check_money(self.unit_price, "UnitPrice")


class PlaceOrder(Command):
    """The seed's `PlaceOrderCommand`."""

    order_id: UUID
    customer_name: Name
    order_lines: Annotated[list[OrderLine], msgspec.Meta(min_length=1, max_length=1000)]


class CancelOrder(Command):
    """Cancel a placed order."""

    order_id: UUID
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


class OrderPlaced(DomainEvent, frozen=True):
    order_id: UUID
    customer_name: str
    order_lines: list[OrderLine]
    total: Decimal


class OrderCancelled(DomainEvent, frozen=True):
    order_id: UUID
    reason: str


class Order(Aggregate):
    """An order (an Agreement in the seed's model): Placed, then possibly Cancelled."""

    stream_type = "Order"

    def __init__(self, stream_id: str) -> None:
        super().__init__(stream_id)
        self.status = "New"
        self.total = Decimal(0)

    @staticmethod
    def stream_for(order_id: UUID) -> str:
        return f"Order-{order_id}"

    def place(self, command: PlaceOrder) -> None:
        if self.exists:
            raise BusinessRuleViolation(f"order {command.order_id} was already placed")
        total = sum((line.quantity * line.unit_price for line in command.order_lines), Decimal(0))
        self._placed(
            OrderPlaced(
                order_id=command.order_id,
                customer_name=command.customer_name,
                order_lines=command.order_lines,
                total=total.quantize(Decimal("0.01")),
            )
        )

    def cancel(self, command: CancelOrder) -> None:
        if not self.exists:
            raise StreamNotFound(f"order {command.order_id} does not exist")
        if self.status != "Placed":
            raise BusinessRuleViolation(
                f"order {command.order_id} is {self.status}; only a Placed order can be cancelled"
            )
        self._cancelled(OrderCancelled(order_id=command.order_id, reason=command.reason))

    @event
    def _placed(self, e: OrderPlaced) -> None:
        self.status = "Placed"
        self.total = e.total

    @event
    def _cancelled(self, e: OrderCancelled) -> None:
        self.status = "Cancelled"
