"""The ERP, declared: the seed's elements, their commands and events, and the rules that need code.

Person and Organisation are Entities (parties, with addresses); Customer is a
Role a party plays for the account's Own Organisation in a Workarea, with a
spending limit; Order is an Agreement; Delivery and Invoice are Business
Activities. A customer's open amount is what its orders placed and not yet
paid or cancelled add up to; PlaceOrder may not take it over the limit.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from commands.errors import BusinessRuleViolation, InvalidCommand
from commands.messages import MAX_MONEY
from commands.model import (
    Attr,
    Change,
    CommandDecl,
    Element,
    EventDecl,
    Kind,
    Model,
    ModelAggregate,
    RuleContext,
    Type,
)

CENT = Decimal("0.01")


def ref(name: str, element: str, required: bool = True) -> Attr:
    return Attr(name, Type.ID, required=required, references=element)


NAME = Attr("Name", searched=True)
ADDRESS = (
    Attr("Kind", max_length=40),
    Attr("Street"),
    Attr("City", max_length=100),
    Attr("PostalCode", max_length=20, required=False),
    Attr("Country", max_length=2),
)
ADDRESSES = Attr("Addresses", Type.RECORDS, required=False, fields=ADDRESS)
ORDER_LINES = Attr(
    "OrderLines",
    Type.RECORDS,
    min_items=1,
    fields=(
        Attr("ProductCode", max_length=100),
        Attr("Quantity", Type.INTEGER, minimum=1, maximum=1_000_000),
        Attr("UnitPrice", Type.MONEY),
    ),
)
MONEY = Type.MONEY


NEW_ADDRESS = Attr("Address", Type.RECORD, fields=ADDRESS)


def party(name: str, *more: CommandDecl) -> Element:
    """A Person or an Organisation (both parties): registered, renamed, given addresses."""
    key = ref(f"{name}Id", name)
    return Element(
        name=name,
        kind=Kind.ENTITY,
        attributes=(key, NAME, Attr("Email", required=False), ADDRESSES),
        commands=(
            CommandDecl(
                f"Register{name}",
                (key, NAME, Attr("Email", required=False)),
                f"{name}Registered",
                key=key.name,
                creates=True,
            ),
            CommandDecl(f"Rename{name}", (key, NAME), "Renamed", key=key.name),
            *more,
        ),
        events=(
            EventDecl(
                f"{name}Registered",
                (key, NAME, Attr("Email", required=False)),
                Change(set=(key.name, "Name", "Email"), status="Active", creates=True),
            ),
            EventDecl("Renamed", (key, NAME), Change(set=("Name",))),
            EventDecl(
                "AddressChanged",
                (ref("PartyId", name), NEW_ADDRESS),
                Change(append=(("Addresses", "Address"),)),
            ),
        ),
    )


# ChangeAddress names a party by id: a Person's stream or else an Organisation's.
PERSON = party(
    "Person",
    CommandDecl(
        "ChangeAddress",
        (ref("PartyId", "Person"), NEW_ADDRESS),
        "AddressChanged",
        key="PartyId",
        alternatives=("Organisation",),
        description="Add an address to a party (a Person or an Organisation).",
    ),
)
ORGANISATION = party("Organisation")

OWN_ORGANISATION = Element(
    name="OwnOrganisation",
    kind=Kind.OWN_ORGANISATION,
    attributes=(ref("OwnOrganisationId", "OwnOrganisation"), NAME),
    commands=(
        CommandDecl(
            "SetUpOwnOrganisation",
            (ref("OwnOrganisationId", "OwnOrganisation"), NAME),
            "OwnOrganisationSetUp",
            key="OwnOrganisationId",
            creates=True,
        ),
    ),
    events=(
        EventDecl(
            "OwnOrganisationSetUp",
            (ref("OwnOrganisationId", "OwnOrganisation"), NAME),
            Change(set=("OwnOrganisationId", "Name"), status="Active", creates=True),
        ),
    ),
)

WORKAREA = Element(
    name="Workarea",
    kind=Kind.WORKAREA,
    attributes=(ref("WorkareaId", "Workarea"), NAME),
    commands=(
        CommandDecl(
            "CreateWorkarea",
            (ref("WorkareaId", "Workarea"), NAME),
            "WorkareaCreated",
            key="WorkareaId",
            creates=True,
        ),
    ),
    events=(
        EventDecl(
            "WorkareaCreated",
            (ref("WorkareaId", "Workarea"), NAME),
            Change(set=("WorkareaId", "Name"), status="Active", creates=True),
        ),
    ),
)


async def _require(ctx: RuleContext, element: str, element_id: Any, what: str) -> ModelAggregate:
    """Load another element the command refers to; 422 if it does not exist."""
    target = ctx.model.elements[element]
    aggregate = await ctx.uow.get(ctx.model.aggregates[element], target.stream_id(element_id))
    if not aggregate.exists:
        raise BusinessRuleViolation(f"{what} {element_id} does not exist")
    return aggregate


async def make_customer(ctx: RuleContext) -> None:
    """The party and the workarea must exist (and the own organisation, when named)."""
    party_id = ctx.payload["PartyId"]
    person = await ctx.uow.get(ctx.model.aggregates["Person"], PERSON.stream_id(party_id))
    if not person.exists:
        await _require(ctx, "Organisation", party_id, "party (Person or Organisation)")
    await _require(ctx, "Workarea", ctx.payload["WorkareaId"], "Workarea")
    if ctx.payload.get("OwnOrganisationId"):
        await _require(ctx, "OwnOrganisation", ctx.payload["OwnOrganisationId"], "OwnOrganisation")


CUSTOMER_FIELDS = (
    ref("CustomerId", "Customer"),
    ref("PartyId", "Person"),
    ref("WorkareaId", "Workarea"),
    ref("OwnOrganisationId", "OwnOrganisation", required=False),
    Attr("SpendingLimit", MONEY),
)
RESERVATION = (ref("CustomerId", "Customer"), ref("OrderId", "Order"), Attr("Amount", MONEY))

CUSTOMER = Element(
    name="Customer",
    kind=Kind.ROLE,
    attributes=(*CUSTOMER_FIELDS, Attr("OpenAmount", MONEY, required=False)),
    commands=(
        CommandDecl(
            "MakeCustomer",
            CUSTOMER_FIELDS,
            "CustomerMade",
            key="CustomerId",
            creates=True,
            rule=make_customer,
            description="A party becomes a Customer of the Own Organisation in a Workarea.",
        ),
        CommandDecl(
            "ChangeSpendingLimit",
            (ref("CustomerId", "Customer"), Attr("SpendingLimit", MONEY)),
            "SpendingLimitChanged",
            key="CustomerId",
            when=("Active",),
        ),
    ),
    events=(
        EventDecl(
            "CustomerMade",
            CUSTOMER_FIELDS,
            Change(set=tuple(a.name for a in CUSTOMER_FIELDS), status="Active", creates=True),
        ),
        EventDecl(
            "SpendingLimitChanged",
            (ref("CustomerId", "Customer"), Attr("SpendingLimit", MONEY)),
            Change(set=("SpendingLimit",)),
        ),
    ),
    internal_events=(
        EventDecl("AmountReserved", RESERVATION, Change(add=(("OpenAmount", "Amount"),))),
        EventDecl("AmountReleased", RESERVATION, Change(subtract=(("OpenAmount", "Amount"),))),
    ),
)


async def place_order(ctx: RuleContext) -> None:
    """Total the lines; reserve the total on the customer, within its spending limit."""
    total = sum(
        (Decimal(line["Quantity"]) * Decimal(line["UnitPrice"]) for line in ctx.payload["OrderLines"]),
        Decimal(0),
    ).quantize(CENT)
    if total > MAX_MONEY:
        raise InvalidCommand(f"OrderLines: the order's total {total} is over the largest amount, {MAX_MONEY}")
    ctx.payload["Total"] = str(total)
    customer_id = ctx.payload.get("CustomerId")
    if customer_id is None:
        return
    customer = await _require(ctx, "Customer", customer_id, "Customer")
    if customer.status != "Active":
        raise BusinessRuleViolation(f"Customer {customer_id} is {customer.status}")
    limit = Decimal(customer.state["SpendingLimit"])
    open_amount = Decimal(customer.state.get("OpenAmount") or 0)
    if open_amount + total > limit:
        raise BusinessRuleViolation(
            f"Customer {customer_id} has a spending limit of {limit:.2f} and an open amount of "
            f"{open_amount:.2f}; an order of {total:.2f} would exceed it"
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


async def deliver_order(ctx: RuleContext) -> None:
    """An order is delivered once, whether before or after it is invoiced (or paid)."""
    order = await _require(ctx, "Order", ctx.payload["OrderId"], "Order")
    if order.state.get("DeliveryId"):
        raise BusinessRuleViolation(
            f"Order {ctx.payload['OrderId']} was already delivered ({order.state['DeliveryId']})"
        )
    if order.status not in ("Placed", "Invoiced", "Paid"):
        raise BusinessRuleViolation(
            f"Order {ctx.payload['OrderId']} is {order.status}; it cannot be delivered"
        )
    await _require(ctx, "Workarea", ctx.payload["WorkareaId"], "Workarea")
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
    order = await _require(ctx, "Order", ctx.payload["OrderId"], "Order")
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
    order = await _require(ctx, "Order", ctx.element.state["OrderId"], "Order")
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

ERP = Model((PERSON, ORGANISATION, OWN_ORGANISATION, WORKAREA, CUSTOMER, ORDER, DELIVERY, INVOICE))
"""The whole ERP slice of the seed's diagram."""
