"""Customers carry their party's name, so GetCustomers pages through them by name from an index.

A Customer's name is its party's (a Person's or an Organisation's), and it changes when the party is
renamed. The party's events live in other streams than the Customer's, and the projector applies
stream types in whatever order it claims them, so triggers keep `rm_customer.party_name` equal to the
party's name whichever row is written first: a Customer written takes its party's current name, and a
party written or renamed gives its name to its Customers. The ERP model's read-model tables must exist
first (`ensure_model_tables`); this runs right after them, on every migration, and is idempotent.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from core.sql import sql_beside

DDL = sql_beside(__file__, "customer_names.sql")
"""The column, its triggers and their functions, its index and the backfill (customer_names.sql)."""


async def ensure_customer_names(connection: asyncpg.Connection[Any]) -> None:
    """Create or replace the triggers (in one transaction); idempotent, run after the read-model tables."""
    async with connection.transaction():
        await connection.execute(DDL)
