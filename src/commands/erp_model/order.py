"""The Order: an Agreement. Placing one reserves its total against the customer's spending limit."""

from __future__ import annotations

from decimal import Decimal

from commands.erp_model.common import CENT, MONEY, ORDER_LINES, ref, require
from commands.erp_model.customer import CUSTOMER
from commands.errors import BusinessRuleViolation, InvalidCommand
from commands.model import (
    MAX_MONEY,
    Attr,
    Change,
    CommandDecl,
    Element,
    EventDecl,
    Kind,
    ModelAggregate,
    RuleContext,
    Type,
)


async def place_order(ctx: RuleContext) -> None:
    """Total the lines; reserve the total on the customer, within its spending limit. A customer whose
    limit was lowered below its open amount (customer.LOWER_LIMITS) fits no order, not even one of 0.00."""
    total = sum(
        (Decimal(line["Quantity"]) * Decimal(line["UnitPrice"]) for line in ctx.payload["OrderLines"]),
        Decimal(0),
    ).quantize(CENT)
    if total > MAX_MONEY:
        raise InvalidCommand(
            f"OrderLines: the order's total {total} is over the largest amount, {MAX_MONEY}", "/OrderLines"
        )
    ctx.payload["Total"] = str(total)
    customer_id = ctx.payload.get("CustomerId")
    if customer_id is None:
        return
    customer = await require(ctx, "Customer", customer_id, "Customer")
    if customer.status != "Active":
        raise BusinessRuleViolation(f"Customer {customer_id} is {customer.status}")
    limit = Decimal(customer.state["SpendingLimit"])
    open_amount = Decimal(customer.state.get("OpenAmount") or 0)
    if open_amount + total > limit:
        over = (
            f" (it is over its limit: no order fits until payments or cancellations bring the open "
            f"amount down to {limit:.2f})"
            if open_amount > limit
            else ""
        )
        raise BusinessRuleViolation(
            f"Customer {customer_id} has a spending limit of {limit:.2f} and an open amount of "
            f"{open_amount:.2f}; an order of {total:.2f} would exceed it{over}"
        )
    customer.raise_event(
        "AmountReserved", {"CustomerId": customer_id, "OrderId": ctx.payload["OrderId"], "Amount": str(total)}
    )


async def release_reservation(ctx: RuleContext, order: ModelAggregate) -> None:
    """An order that stops being open gives its amount back to its customer."""
    customer_id = order.state.get("CustomerId")
    if customer_id is None:
        return
    customer = await ctx.uow.get(ctx.model.aggregates["Customer"], CUSTOMER.stream_id(customer_id))
    customer.raise_event(
        "AmountReleased",
        {"CustomerId": customer_id, "OrderId": order.state["OrderId"], "Amount": order.state["Total"]},
    )


async def cancel_order(ctx: RuleContext) -> None:
    await release_reservation(ctx, ctx.element)


ORDER_FIELDS = (
    ref("OrderId", "Order"),
    Attr("CustomerName", searched=True),
    ORDER_LINES,
    ref("CustomerId", "Customer", required=False),
)

ORDER = Element(
    name="Order",
    kind=Kind.AGREEMENT,
    attributes=(
        *ORDER_FIELDS,
        Attr("Total", MONEY),
        Attr("CancelReason", Type.TEXT, required=False),
        ref("DeliveryId", "Delivery", required=False),
    ),
    commands=(
        CommandDecl(
            "PlaceOrder",
            ORDER_FIELDS,
            "OrderPlaced",
            key="OrderId",
            creates=True,
            rule=place_order,
            description="The seed's PlaceOrderCommand; a CustomerId makes it count against the limit.",
        ),
        CommandDecl(
            "CancelOrder",
            (ref("OrderId", "Order"), Attr("Reason", Type.TEXT, max_length=1000)),
            "OrderCancelled",
            key="OrderId",
            when=("Placed",),
            rule=cancel_order,
        ),
    ),
    events=(
        EventDecl(
            "OrderPlaced",
            (*ORDER_FIELDS, Attr("Total", MONEY)),
            Change(set=(*(a.name for a in ORDER_FIELDS), "Total"), status="Placed", creates=True),
        ),
        EventDecl(
            "OrderCancelled",
            (ref("OrderId", "Order"), Attr("Reason", Type.TEXT, max_length=1000)),
            Change(status="Cancelled", copy=(("CancelReason", "Reason"),)),
        ),
    ),
    internal_events=(
        EventDecl(
            "OrderDelivered",
            (ref("OrderId", "Order"), ref("DeliveryId", "Delivery")),
            Change(set=("DeliveryId",), status="Delivered"),
        ),
        EventDecl(
            "InvoicedOrderDelivered",
            (ref("OrderId", "Order"), ref("DeliveryId", "Delivery")),
            Change(set=("DeliveryId",)),
        ),
        EventDecl(
            "OrderInvoiced", (ref("OrderId", "Order"), ref("InvoiceId", "Invoice")), Change(status="Invoiced")
        ),
        EventDecl("OrderPaid", (ref("OrderId", "Order"), ref("InvoiceId", "Invoice")), Change(status="Paid")),
    ),
)
