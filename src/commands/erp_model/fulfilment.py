"""Delivery and Invoice: the Business Activities that fulfil an order."""

from __future__ import annotations

from commands.erp_model.common import MONEY, ref, require
from commands.erp_model.order import release_reservation
from commands.errors import BusinessRuleViolation
from commands.model import (
    Attr,
    Change,
    CommandDecl,
    Element,
    EventDecl,
    Kind,
    RuleContext,
)


async def deliver_order(ctx: RuleContext) -> None:
    """An order is delivered once, whether before or after it is invoiced (or paid)."""
    order = await require(ctx, "Order", ctx.payload["OrderId"], "Order")
    if order.state.get("DeliveryId"):
        raise BusinessRuleViolation(
            f"Order {ctx.payload['OrderId']} was already delivered ({order.state['DeliveryId']})"
        )
    if order.status not in ("Placed", "Invoiced", "Paid"):
        raise BusinessRuleViolation(
            f"Order {ctx.payload['OrderId']} is {order.status}; it cannot be delivered"
        )
    await require(ctx, "Workarea", ctx.payload["WorkareaId"], "Workarea")
    delivered = {"OrderId": ctx.payload["OrderId"], "DeliveryId": ctx.payload["DeliveryId"]}
    order.raise_event("OrderDelivered" if order.status == "Placed" else "InvoicedOrderDelivered", delivered)


DELIVERY_FIELDS = (ref("DeliveryId", "Delivery"), ref("OrderId", "Order"), ref("WorkareaId", "Workarea"))

DELIVERY = Element(
    name="Delivery",
    kind=Kind.BUSINESS_ACTIVITY,
    attributes=DELIVERY_FIELDS,
    commands=(
        CommandDecl(
            "DeliverOrder",
            DELIVERY_FIELDS,
            "DeliveryMade",
            key="DeliveryId",
            creates=True,
            rule=deliver_order,
        ),
    ),
    events=(
        EventDecl(
            "DeliveryMade",
            DELIVERY_FIELDS,
            Change(set=tuple(a.name for a in DELIVERY_FIELDS), status="Delivered", creates=True),
        ),
    ),
)


async def invoice_order(ctx: RuleContext) -> None:
    order = await require(ctx, "Order", ctx.payload["OrderId"], "Order")
    if order.status not in ("Placed", "Delivered"):
        raise BusinessRuleViolation(
            f"Order {ctx.payload['OrderId']} is {order.status}; "
            "only a Placed or Delivered order can be invoiced"
        )
    ctx.payload["Amount"] = order.state["Total"]
    if order.state.get("CustomerId"):
        ctx.payload["CustomerId"] = order.state["CustomerId"]
    order.raise_event(
        "OrderInvoiced", {"OrderId": ctx.payload["OrderId"], "InvoiceId": ctx.payload["InvoiceId"]}
    )


async def pay_invoice(ctx: RuleContext) -> None:
    order = await require(ctx, "Order", ctx.element.state["OrderId"], "Order")
    order.raise_event("OrderPaid", {"OrderId": order.state["OrderId"], "InvoiceId": ctx.payload["InvoiceId"]})
    await release_reservation(ctx, order)


INVOICE_FIELDS = (ref("InvoiceId", "Invoice"), ref("OrderId", "Order"))
INVOICE_STATE = (*INVOICE_FIELDS, ref("CustomerId", "Customer", required=False), Attr("Amount", MONEY))

INVOICE = Element(
    name="Invoice",
    kind=Kind.BUSINESS_ACTIVITY,
    attributes=INVOICE_STATE,
    commands=(
        CommandDecl(
            "InvoiceOrder", INVOICE_FIELDS, "InvoiceIssued", key="InvoiceId", creates=True, rule=invoice_order
        ),
        CommandDecl(
            "PayInvoice",
            (ref("InvoiceId", "Invoice"),),
            "InvoicePaid",
            key="InvoiceId",
            when=("Open",),
            rule=pay_invoice,
        ),
    ),
    events=(
        EventDecl(
            "InvoiceIssued",
            INVOICE_STATE,
            Change(set=tuple(a.name for a in INVOICE_STATE), status="Open", creates=True),
        ),
        EventDecl("InvoicePaid", (ref("InvoiceId", "Invoice"),), Change(status="Paid")),
    ),
    listed_by_status=True,  # GetOpenInvoices
)
