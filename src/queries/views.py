"""The read side's queries, in plain SQL over the model's read-model tables.

Each runs under the tenant's row-level-security session, so none filters by
account itself. What a query shows of another element (a customer's name on its
orders and invoices, its party's addresses) is read as the read models declare
it (`commands.erp_model.read_models`): copied, combined or joined.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from uuid import UUID

import asyncpg
import msgspec

from commands.erp_model import ERP
from commands.model import MONEY_PATTERN, Money, money_text
from core.text import Name
from queries.paging import DEFAULT_LIMIT, MAX_LIMIT, Limit, Page, decode_cursor, fetch_page
from queries.registry import SHOWS
from queries.shown import Scope, Shows


class QueryParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="pascal"):
    """Base of every query's parameters."""


class ListParams(QueryParams, kw_only=True):
    """Base of the queries that answer a list: it comes a page at a time."""

    limit: Limit = DEFAULT_LIMIT
    after: str | None = None
    """The `Next` cursor of the previous page."""

    sort_key: ClassVar[tuple[type, ...]] = ()
    """The types of the sort key a page ends on, which its `Next` cursor holds."""

    def seek(self) -> tuple[Any, ...]:
        """The sort key to start after (all None for the first page); InvalidCursor if `after` is
        not a cursor of this query (the API asks before it runs any SQL)."""
        types = self.sort_key
        return (None,) * len(types) if self.after is None else decode_cursor(self.after, types)


class GetOrders(ListParams):
    """The seed's `GetOrders {CustomerName}`."""

    sort_key = (datetime, UUID)
    customer_name: Name


class GetCustomers(ListParams):
    sort_key = (str, UUID)
    workarea_id: UUID | None = None


class GetCustomer(QueryParams):
    customer_id: UUID


class GetOpenInvoices(ListParams):
    sort_key = (datetime, UUID)
    customer_id: UUID | None = None


class GetOpenAmounts(ListParams):
    """What each workarea's customers have open, in workarea order."""

    sort_key = (UUID,)
    workarea_id: UUID | None = None


class GetDeliveries(ListParams):
    sort_key = (datetime, UUID)
    workarea_id: UUID


def _statuses(element: str) -> Any:
    """The statuses the model's element can be in, as a Literal: an enum in the OpenAPI document."""
    return Literal[ERP.elements[element].statuses]


if TYPE_CHECKING:
    OrderStatus = str
    CustomerStatus = str
else:
    OrderStatus = _statuses("Order")
    CustomerStatus = _statuses("Customer")


class View(msgspec.Struct, rename="pascal", omit_defaults=True):
    """Base of every item; optional fields are left out when empty."""


class OrderLineView(View):
    product_code: str
    quantity: int
    unit_price: Money


class OrderView(View):
    order_id: UUID
    customer_name: str
    status: OrderStatus
    total: Money
    order_lines: list[OrderLineView]
    customer_id: UUID | None = None
    custom: dict[str, Any] | None = None


class CustomerView(View):
    """A customer. OpenAmount may be above SpendingLimit: a limit lowered below what is open
    stands (OverLimit), and the customer's new orders are refused until payments and cancellations
    bring the open amount within it (AvailableCredit is then above 0.00 again)."""

    customer_id: UUID
    party_id: UUID
    name: str | None
    status: CustomerStatus
    workarea_id: UUID
    spending_limit: Money
    open_amount: Money
    available_credit: Annotated[
        str,
        msgspec.Meta(
            pattern=MONEY_PATTERN,
            description="What the customer's next orders may add up to: SpendingLimit less OpenAmount, "
            "0.00 when the open amount is at or over the limit.",
        ),
    ]
    over_limit: Annotated[
        bool,
        msgspec.Meta(
            description="OpenAmount is above SpendingLimit (the limit was lowered below it): "
            "new orders are refused; payments and cancellations go through."
        ),
    ]
    own_organisation_id: UUID | None = None
    email: str | None = None
    addresses: list[dict[str, Any]] | None = None
    custom: dict[str, Any] | None = None


class InvoiceView(View):
    invoice_id: UUID
    order_id: UUID
    amount: Money
    customer_name: str
    issued_at: datetime
    customer_id: UUID | None = None


class OpenAmountView(View):
    """A workarea's customers (those with a read-model row) and what their orders have open."""

    workarea_id: UUID
    customers: int
    open_amount: Money


class DeliveryView(View):
    delivery_id: UUID
    order_id: UUID
    workarea_id: UUID
    customer_name: str
    delivered_at: datetime


# What each query shows of another element is read as the ERP's read models declare it
# (`commands.erp_model.read_models`, served by `queries.shown`): an order's customer name copied
# onto it, an invoice's and a delivery's combined from the customers' and the orders' tables, a
# customer's email and addresses joined from its party's.
_INVOICE_PARTY_JOINS, INVOICE_PARTY_NAME = SHOWS.read("Invoice", "PartyName", "i")
_DELIVERY_PARTY_JOINS, DELIVERY_PARTY_NAME = SHOWS.read("Delivery", "PartyName", "d")
_EMAIL_JOINS, CUSTOMER_EMAIL = SHOWS.read("Customer", "Email", "c")
_ADDRESS_JOINS, CUSTOMER_ADDRESSES = SHOWS.read("Customer", "Addresses", "c")
_CUSTOMER_NAME_JOINS, CUSTOMER_NAME = SHOWS.read("Customer", "PartyName", "c")

# An order shows its customer's name or, when it has none (no customer, or one whose name it does not
# show yet), the name it was placed with. So a page of one name's orders is the first rows of two
# disjoint sets, each read in creation order from an index, a page at most: orders placed with that
# name that show no customer's name, and the orders of each customer of that name (found from an
# index, `Shows.named`) that show it.
_AFTER = "($2::timestamptz IS NULL OR (o.created_at, o.id) > ($2, $3::uuid))"


def orders_sql(shows: Shows) -> str:
    """GetOrders over read models that show what `shows` says (the ERP's, or a bench's variant)."""
    joins, party_name = shows.read("Order", "PartyName", "o")
    return f"""
WITH candidates AS (
    (SELECT o.id, o.created_at FROM rm_order o {joins}
     WHERE o.customer_name = $1 AND {party_name} IS NULL AND {_AFTER}
     ORDER BY o.created_at, o.id
     LIMIT $4)
    UNION ALL
    SELECT of_customer.id, of_customer.created_at
    FROM ({shows.named("Customer", "PartyName", "$1")}) named
    CROSS JOIN LATERAL (SELECT o.id, o.created_at FROM rm_order o {joins}
                        WHERE o.customer_id = named.id AND {party_name} = $1 AND {_AFTER}
                        ORDER BY o.created_at, o.id
                        LIMIT $4) of_customer
),
page AS (SELECT id, created_at FROM candidates ORDER BY created_at, id LIMIT $4)
SELECT o.order_id, coalesce({party_name}, o.customer_name) AS customer_name, o.status, o.total,
       o.order_lines::text AS order_lines, o.customer_id, o.custom, o.created_at
FROM page JOIN rm_order o ON o.id = page.id {joins}
ORDER BY page.created_at, page.id
"""


_GET_ORDERS = orders_sql(SHOWS)


def _custom(value: Any) -> dict[str, Any] | None:
    return value or None


SMALL_ROWS = MAX_LIMIT + 1
"""`first_rows` for a query whose rows are all small (ids, a name, an amount, a time: under 1 kB),
so that a whole page of them is read in one round trip."""


def _lines(stored: str) -> list[OrderLineView]:
    """An order's lines: the read model's JSON as it is (the projection stores them in the wire's
    form, `queries.model_projection`), so that a page of big orders costs a copy, not a look at
    each line. Typed as what it holds, for the OpenAPI document."""
    return msgspec.Raw(stored)  # type: ignore[return-value]


def _order(r: asyncpg.Record) -> OrderView:
    return OrderView(
        r["order_id"],
        r["customer_name"],
        r["status"],
        money_text(r["total"]),
        _lines(r["order_lines"]),
        r["customer_id"],
        _custom(r["custom"]),
    )


async def get_orders(
    connection: asyncpg.Connection[Any], params: GetOrders, sql: str = _GET_ORDERS
) -> Page[Any]:
    after = params.seek()
    return await fetch_page(
        connection,
        sql,
        (params.customer_name, *after, params.limit + 1),
        limit=params.limit,
        key=lambda r: (r["created_at"], r["order_id"]),
        view=_order,
    )


_CUSTOMERS = f"""
SELECT c.id, c.party_id, {CUSTOMER_NAME} AS name, coalesce({CUSTOMER_NAME}, '') AS sort_name,
       c.status, c.workarea_id, c.spending_limit,
       coalesce(c.open_amount, 0)::numeric(18, 2) AS open_amount, c.own_organisation_id, c.custom
FROM rm_customer c {_CUSTOMER_NAME_JOINS}
"""
_CUSTOMER = f"""
SELECT c.id, c.party_id, {CUSTOMER_NAME} AS name, c.status, c.workarea_id, c.spending_limit,
       coalesce(c.open_amount, 0)::numeric(18, 2) AS open_amount, c.own_organisation_id, c.custom,
       {CUSTOMER_EMAIL} AS email, {CUSTOMER_ADDRESSES} AS addresses
FROM rm_customer c {_CUSTOMER_NAME_JOINS} {_EMAIL_JOINS} {_ADDRESS_JOINS}
WHERE c.id = $1
"""


def _customer(r: asyncpg.Record, detail: bool) -> CustomerView:
    limit: Decimal = r["spending_limit"]
    open_amount: Decimal = r["open_amount"]
    return CustomerView(
        r["id"],
        r["party_id"],
        r["name"],
        r["status"],
        r["workarea_id"],
        money_text(limit),
        money_text(open_amount),
        money_text(max(limit - open_amount, Decimal(0))),
        open_amount > limit,
        r["own_organisation_id"],
        r["email"] if detail else None,
        (r["addresses"] or []) if detail else None,
        _custom(r["custom"]),
    )


# Two statements each for an optional filter: with `$1 IS NULL OR column = $1` the generic plan
# could not use the column's index. Customers are listed by their party's name, copied onto
# rm_customer so that an index holds them in that order.
_GET_CUSTOMERS_IN = f"""{_CUSTOMERS}
WHERE {{workarea}}
  AND ($2::text IS NULL OR (coalesce({CUSTOMER_NAME}, ''), c.id) > ($2, $3::uuid))
ORDER BY coalesce({CUSTOMER_NAME}, ''), c.id
LIMIT $4
"""
_GET_CUSTOMERS = {
    filtered: _GET_CUSTOMERS_IN.format(workarea="c.workarea_id = $1" if filtered else "$1::uuid IS NULL")
    for filtered in (False, True)
}


async def get_customers(connection: asyncpg.Connection[Any], params: GetCustomers) -> Page[Any]:
    after = params.seek()
    return await fetch_page(
        connection,
        _GET_CUSTOMERS[params.workarea_id is not None],
        (params.workarea_id, *after, params.limit + 1),
        limit=params.limit,
        key=lambda r: (r["sort_name"], r["id"]),
        view=lambda r: _customer(r, detail=False),
    )


async def get_customer(connection: asyncpg.Connection[Any], params: GetCustomer) -> Page[CustomerView]:
    rows = await connection.fetch(_CUSTOMER, params.customer_id)
    return Page([_customer(r, detail=True) for r in rows])


_OPEN_INVOICES_OF = f"""
SELECT i.id, i.order_id, i.amount, i.customer_id, i.created_at,
       coalesce({INVOICE_PARTY_NAME}, o.customer_name) AS customer_name
FROM rm_invoice i
JOIN rm_order o ON o.account_id = i.account_id AND o.id = i.order_id
{_INVOICE_PARTY_JOINS}
WHERE i.status = 'Open' AND {{customer}}
  AND ($2::timestamptz IS NULL OR (i.created_at, i.id) > ($2, $3::uuid))
ORDER BY i.created_at, i.id
LIMIT $4
"""
_OPEN_INVOICES = {
    filtered: _OPEN_INVOICES_OF.format(customer="i.customer_id = $1" if filtered else "$1::uuid IS NULL")
    for filtered in (False, True)
}


def _invoice(r: asyncpg.Record) -> InvoiceView:
    return InvoiceView(
        r["id"],
        r["order_id"],
        money_text(r["amount"]),
        r["customer_name"],
        r["created_at"],
        r["customer_id"],
    )


async def get_open_invoices(connection: asyncpg.Connection[Any], params: GetOpenInvoices) -> Page[Any]:
    after = params.seek()
    return await fetch_page(
        connection,
        _OPEN_INVOICES[params.customer_id is not None],
        (params.customer_id, *after, params.limit + 1),
        limit=params.limit,
        key=lambda r: (r["created_at"], r["id"]),
        view=_invoice,
        first_rows=SMALL_ROWS,
    )


_DELIVERIES = f"""
SELECT d.id, d.order_id, d.workarea_id, d.created_at,
       coalesce({DELIVERY_PARTY_NAME}, o.customer_name) AS customer_name
FROM rm_delivery d
JOIN rm_order o ON o.account_id = d.account_id AND o.id = d.order_id
{_DELIVERY_PARTY_JOINS}
WHERE d.workarea_id = $1
  AND ($2::timestamptz IS NULL OR (d.created_at, d.id) > ($2, $3::uuid))
ORDER BY d.created_at, d.id
LIMIT $4
"""


def _delivery(r: asyncpg.Record) -> DeliveryView:
    return DeliveryView(r["id"], r["order_id"], r["workarea_id"], r["customer_name"], r["created_at"])


async def get_deliveries(connection: asyncpg.Connection[Any], params: GetDeliveries) -> Page[Any]:
    after = params.seek()
    return await fetch_page(
        connection,
        _DELIVERIES,
        (params.workarea_id, *after, params.limit + 1),
        limit=params.limit,
        key=lambda r: (r["created_at"], r["id"]),
        view=_delivery,
        first_rows=SMALL_ROWS,
    )


# The chained read model's groups (`queries.chained`), one per workarea.
_OPEN_AMOUNTS = """
SELECT id, rows, open_amount FROM rm_open_amounts
WHERE ($1::uuid IS NULL OR id = $1) AND ($2::uuid IS NULL OR id > $2)
ORDER BY id
LIMIT $3
"""


async def get_open_amounts(connection: asyncpg.Connection[Any], params: GetOpenAmounts) -> Page[Any]:
    (after,) = params.seek()
    return await fetch_page(
        connection,
        _OPEN_AMOUNTS,
        (params.workarea_id, after, params.limit + 1),
        limit=params.limit,
        key=lambda r: (r["id"],),
        view=lambda r: OpenAmountView(r["id"], r["rows"], money_text(r["open_amount"])),
        first_rows=SMALL_ROWS,
    )


@dataclass(frozen=True, slots=True)
class QuerySpec:
    """A query the API serves, its item type and the projections it reads."""

    name: str
    params: type[QueryParams]
    item: type[View]
    projections: tuple[str, ...]
    run: Callable[[asyncpg.Connection[Any], Any], Awaitable[Page[Any]]]
    reads: tuple[tuple[str, str], ...] = ()
    """What it shows of other elements (element, attribute), when it reads only that of the
    `projections` it joins: a ConsistentWith wait then looks at `scope`, not at their every fan-out
    (GetOpenInvoices joins the orders for the name an order was placed with, not for their copy of
    the customer's name, whose fan-out it does not wait for)."""

    @property
    def scope(self) -> Scope | None:
        return SHOWS.query_scope(self.projections, self.reads) if self.reads else None


QUERIES: dict[str, QuerySpec] = {
    spec.name: spec
    for spec in (
        QuerySpec("GetOrders", GetOrders, OrderView, ("orders", "customers"), get_orders),
        QuerySpec("GetCustomers", GetCustomers, CustomerView, ("customers",), get_customers),
        QuerySpec("GetCustomer", GetCustomer, CustomerView, ("customers",), get_customer),
        QuerySpec(
            "GetOpenInvoices",
            GetOpenInvoices,
            InvoiceView,
            ("activities", "orders"),
            get_open_invoices,
            reads=(("Invoice", "PartyName"),),
        ),
        QuerySpec("GetOpenAmounts", GetOpenAmounts, OpenAmountView, ("open_amounts",), get_open_amounts),
        QuerySpec(
            "GetDeliveries",
            GetDeliveries,
            DeliveryView,
            ("activities", "orders"),
            get_deliveries,
            reads=(("Delivery", "PartyName"),),
        ),
    )
}
