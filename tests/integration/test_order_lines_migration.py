"""Migration 0014: order lines projected before money had one form are rewritten in the wire's
form (`"10.00"`), and nothing else changes."""

from __future__ import annotations

import importlib
import json
import uuid
from typing import Any

import asyncpg

NORMALISE: str = importlib.import_module("erp.migrations.versions.0014_order_lines_money").NORMALISE


async def test_old_order_lines_are_rewritten_with_two_decimals(own_pool: asyncpg.Pool[Any]) -> None:
    account_id, old, new = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    lines_old = [
        {"ProductCode": "A", "Quantity": 1, "UnitPrice": "1E+3"},
        {"ProductCode": "B", "Quantity": 2, "UnitPrice": "12.5"},
        {"ProductCode": "C", "Quantity": 3, "UnitPrice": "7"},
    ]
    lines_new = [{"ProductCode": "D", "Quantity": 1, "UnitPrice": "10.00"}]
    async with own_pool.acquire() as connection:  # the superuser, as migrations run
        columns = {
            r["column_name"]
            for r in await connection.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'rm_order'"
            )
        }
        assert {"order_lines", "total", "customer_name"} <= columns
        for order_id, lines in ((old, lines_old), (new, lines_new)):
            await connection.execute(
                "INSERT INTO rm_order (account_id, id, order_id, customer_name, status, total,"
                " order_lines, custom, created_at, updated_at)"
                " VALUES ($1, $2, $2, 'Ada', 'Placed', 0, $3, '{}', now(), now())",
                account_id,
                order_id,
                lines,
            )
        before = await connection.fetchval("SELECT updated_at FROM rm_order WHERE id = $1", new)
        await connection.execute(NORMALISE)
        await connection.execute(NORMALISE)  # again: nothing left to change
        rows = {
            r["id"]: json.loads(r["order_lines"])
            for r in await connection.fetch("SELECT id, order_lines::text FROM rm_order")
        }
        assert rows[old] == [
            {"ProductCode": "A", "Quantity": 1, "UnitPrice": "1000.00"},
            {"ProductCode": "B", "Quantity": 2, "UnitPrice": "12.50"},
            {"ProductCode": "C", "Quantity": 3, "UnitPrice": "7.00"},
        ]
        assert rows[new] == lines_new
        assert await connection.fetchval("SELECT updated_at FROM rm_order WHERE id = $1", new) == before
