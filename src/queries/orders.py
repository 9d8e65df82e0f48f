"""The `orders` read model: one row per order, queried by GetOrders."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from commands.event_store import RecordedEvent

_INSERT = """
INSERT INTO orders (account_id, order_id, customer_name, status, total, order_lines,
                    placed_at, updated_at)
SELECT account_id, order_id, customer_name, 'Placed', total, order_lines::jsonb, at, at
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::numeric[], $5::text[], $6::timestamptz[])
     AS o(account_id, order_id, customer_name, total, order_lines, at)
"""
_CANCEL = """
UPDATE orders SET status = 'Cancelled', cancel_reason = $3, updated_at = $4
WHERE account_id = $1 AND order_id = $2
"""


class OrdersProjection:
    """Orders placed and cancelled, per account."""

    name = "orders"
    stream_types: tuple[str, ...] = ("Order",)

    async def apply(self, connection: asyncpg.Connection[Any], events: Sequence[RecordedEvent]) -> None:
        placed: tuple[list[Any], ...] = ([], [], [], [], [], [])
        cancelled: list[tuple[Any, ...]] = []
        for e in events:
            if e.name == "OrderPlaced":
                p = e.payload
                for column, value in zip(
                    placed,
                    (
                        e.account_id,
                        UUID(p["OrderId"]),
                        p["CustomerName"],
                        Decimal(p["Total"]),
                        json.dumps(p["OrderLines"]),
                        e.commit_time,
                    ),
                    strict=True,
                ):
                    column.append(value)
            elif e.name == "OrderCancelled":
                cancelled.append(
                    (e.account_id, UUID(e.payload["OrderId"]), e.payload["Reason"], e.commit_time)
                )
        # An order's cancellation always follows its placement, so inserting first is safe.
        if placed[0]:
            await connection.execute(_INSERT, *placed)
        if cancelled:
            await connection.executemany(_CANCEL, cancelled)

    async def clear(self, connection: asyncpg.Connection[Any], account_id: UUID | None) -> None:
        if account_id is None:
            await connection.execute("DELETE FROM orders")
        else:
            await connection.execute("DELETE FROM orders WHERE account_id = $1", account_id)
