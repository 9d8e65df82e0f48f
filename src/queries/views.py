"""The read side's queries, in plain SQL over read models; each runs under the tenant's RLS session."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import msgspec


class QueryParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="pascal"):
    """Base of every query's parameters."""


class GetOrders(QueryParams):
    """The seed's `GetOrders {CustomerName}`."""

    customer_name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class OrderView(msgspec.Struct, rename="pascal"):
    order_id: UUID
    customer_name: str
    status: str
    total: Decimal
    order_lines: list[dict[str, Any]]


# No account filter here on purpose: row-level security adds it.
_GET_ORDERS = """
SELECT order_id, customer_name, status, total, order_lines FROM orders
WHERE customer_name = $1 ORDER BY placed_at, order_id
"""


async def get_orders(connection: asyncpg.Connection[Any], params: GetOrders) -> list[OrderView]:
    rows = await connection.fetch(_GET_ORDERS, params.customer_name)
    return [
        OrderView(r["order_id"], r["customer_name"], r["status"], r["total"], r["order_lines"]) for r in rows
    ]


@dataclass(frozen=True, slots=True)
class QuerySpec:
    """A query the API serves and the projection it reads."""

    name: str
    params: type[QueryParams]
    projection: str
    run: Callable[[asyncpg.Connection[Any], Any], Awaitable[list[Any]]]


QUERIES: dict[str, QuerySpec] = {
    spec.name: spec for spec in (QuerySpec("GetOrders", GetOrders, "orders", get_orders),)
}
