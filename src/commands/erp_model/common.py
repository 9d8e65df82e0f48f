"""What the ERP's elements share: attribute shapes, references and the rules' helper."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from commands.errors import BusinessRuleViolation
from commands.model import (
    ERASED,
    Attr,
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
MAX_ADDRESSES = 100
"""A party's addresses (each ChangeAddress adds one): billing, delivery and visiting addresses of
every site, and the old ones; a chain with more sites gives each its own party."""
MAX_ORDER_LINES = 1_000
"""Order lines: business orders have tens of lines, EDI replenishment orders a few hundred; ERPs
advise splitting orders beyond about a thousand (every change, delivery and invoice of an order
reads and writes all its lines). 1,000 lines are about 60 kB of JSON, well within a 1 MiB body."""
ADDRESSES = Attr("Addresses", Type.RECORDS, required=False, fields=ADDRESS, max_items=MAX_ADDRESSES)
ORDER_LINES = Attr(
    "OrderLines",
    Type.RECORDS,
    min_items=1,
    max_items=MAX_ORDER_LINES,
    fields=(
        Attr("ProductCode", max_length=100),
        Attr("Quantity", Type.INTEGER, minimum=1, maximum=1_000_000),
        Attr("UnitPrice", Type.MONEY),
    ),
)
MONEY = Type.MONEY


NEW_ADDRESS = Attr("Address", Type.RECORD, fields=ADDRESS)


async def require(ctx: RuleContext, element: str, element_id: Any, what: str) -> ModelAggregate:
    """Load another element the command refers to; 422 if it does not exist or was erased."""
    target = ctx.model.elements[element]
    aggregate = await ctx.uow.get(ctx.model.aggregates[element], target.stream_id(element_id))
    if not aggregate.exists:
        raise BusinessRuleViolation(f"{what} {element_id} does not exist")
    if aggregate.status == ERASED:
        raise BusinessRuleViolation(f"{what} {element_id} was erased")
    return aggregate
