"""The Customer: a Role a party plays for the Own Organisation in a Workarea, with a spending limit."""

from __future__ import annotations

from commands.erp_model.common import MONEY, ref, require
from commands.erp_model.parties import PERSON
from commands.errors import BusinessRuleViolation
from commands.model import (
    ERASED,
    Attr,
    Change,
    CommandDecl,
    Element,
    EventDecl,
    Kind,
    RuleContext,
    Type,
)


async def make_customer(ctx: RuleContext) -> None:
    """The party and the workarea must exist (and the own organisation, when named)."""
    party_id = ctx.payload["PartyId"]
    person = await ctx.uow.get(ctx.model.aggregates["Person"], PERSON.stream_id(party_id))
    if not person.exists:
        await require(ctx, "Organisation", party_id, "party (Person or Organisation)")
    elif person.status == ERASED:
        raise BusinessRuleViolation(f"party (Person) {party_id} was erased")
    await require(ctx, "Workarea", ctx.payload["WorkareaId"], "Workarea")
    if ctx.payload.get("OwnOrganisationId"):
        await require(ctx, "OwnOrganisation", ctx.payload["OwnOrganisationId"], "OwnOrganisation")


LOWER_LIMITS = (
    "Sets the customer's spending limit, even below its open amount (what its open orders add up to): "
    "a credit manager may cut a customer in trouble at once. Such a customer is over its limit "
    "(GetCustomer: OverLimit, AvailableCredit 0.00) and its new orders are refused until payments and "
    "cancellations bring the open amount within the limit; what it already ordered is delivered, "
    "invoiced and paid as usual."
)
"""The rule of a limit below the open amount (SAP credit management's: blocking, not refusing)."""

CUSTOMER_FIELDS = (
    ref("CustomerId", "Customer"),
    Attr("PartyId", Type.ID, references="Person", alternatives=("Organisation",)),
    ref("WorkareaId", "Workarea"),
    ref("OwnOrganisationId", "OwnOrganisation", required=False),
    Attr("SpendingLimit", MONEY),
)
RESERVATION = (ref("CustomerId", "Customer"), ref("OrderId", "Order"), Attr("Amount", MONEY))

SNAPSHOT_EVERY = 500
"""Every order with a CustomerId reserves its amount on the Customer stream, so a big customer's
stream is as long as its orders: a snapshot every 500 events, and a cold load reads at most 499."""

CUSTOMER = Element(
    name="Customer",
    kind=Kind.ROLE,
    attributes=(*CUSTOMER_FIELDS, Attr("OpenAmount", MONEY, required=False)),
    snapshot_every=SNAPSHOT_EVERY,
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
            description=LOWER_LIMITS,
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
