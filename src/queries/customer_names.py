"""Customers carry their party's name, so GetCustomers pages through them by name from an index.

A Customer's name is its party's (a Person's or an Organisation's), and it changes when the party is
renamed. The party's events live in other streams than the Customer's, and the projector applies
stream types in whatever order it claims them, so triggers keep `rm_customer.party_name` equal to the
party's name whichever row is written first: a Customer written takes its party's current name, and a
party written or renamed gives its name to its Customers. The ERP model's read-model tables must exist
first (`ensure_model_tables`); this runs right after them, on every migration, and is idempotent.

A version of the customers read model built beside the live one (`queries.projector.versions`) has
triggers and functions of its own, over its own tables (`ddl(suffix)`).
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from core.sql import sql_beside

DDL = sql_beside(__file__, "customer_names.sql")
"""The column, its triggers and their functions, and its index (customer_names.sql)."""
BACKFILL = sql_beside(__file__, "customer_names_backfill.sql")
"""Customers projected before the triggers existed get their names (customer_names_backfill.sql)."""
_NAMES = re.compile(
    r"\b(rm_customer|rm_person|rm_organisation|erp_customer_takes_party_name|erp_party_gives_name)"
)


def ddl(suffix: str = "") -> str:
    """The triggers' DDL for the tables whose names end with `suffix` (the live ones: "")."""
    return _NAMES.sub(lambda m: m.group(1) + suffix, DDL) if suffix else DDL


async def ensure_customer_names(connection: asyncpg.Connection[Any]) -> None:
    """Create or replace the triggers (in one transaction); idempotent, run after the read-model tables."""
    async with connection.transaction():
        await connection.execute(DDL)
        await connection.execute(BACKFILL)
