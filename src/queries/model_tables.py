"""Read-model tables generated from the model: one table per element, one column per attribute.

`rm_<element>` holds the current state of each element of each account:
account_id, id, status, the attributes as typed columns, and `custom` (the
account's own attributes, jsonb). Every table gets the same row-level-security
policy as the event store. `ensure_model_tables` is idempotent: it creates
what is missing and adds new attributes as columns, so it runs on every
migration.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg

from commands.model import Attr, Element, Model, Type, snake
from core.db import TENANT_ROLE

COLUMN_TYPES = {
    Type.STRING: "text",
    Type.TEXT: "text",
    Type.INTEGER: "bigint",
    Type.MONEY: "numeric(18, 2)",
    Type.ID: "uuid",
    Type.DATE: "date",
    Type.BOOLEAN: "boolean",
    Type.RECORD: "jsonb",
    Type.RECORDS: "jsonb",
}
RESERVED = frozenset({"account_id", "id", "status", "custom", "created_at", "updated_at"})


def table_name(element: Element, suffix: str = "") -> str:
    """The element's read-model table; a `suffix` (`__v4`) names a version built beside the live one
    (`queries.projector.versions`)."""
    return f"rm_{snake(element.name)}{suffix}"


def column_name(attr: Attr) -> str:
    name = attr.snake
    return f"attr_{name}" if name in RESERVED else name


def element_ddl(element: Element, suffix: str = "") -> str:
    """Idempotent DDL for one element's table, its indexes and its tenant policy (every name the
    table's own, prefixed: a version's objects are renamed with its table)."""
    table = table_name(element, suffix)
    statements = [
        f"CREATE TABLE IF NOT EXISTS {table} ("
        "account_id uuid NOT NULL, id uuid NOT NULL, status text, "
        "custom jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL, "
        "updated_at timestamptz NOT NULL, "
        f"CONSTRAINT {table}_pkey PRIMARY KEY (account_id, id))"
    ]
    for attr in element.attributes:
        statements.append(
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column_name(attr)} {COLUMN_TYPES[attr.type]}"
        )
        if attr.searched or (attr.type is Type.ID and attr.references and attr.references != element.name):
            # Rows with one value come in creation order from the index alone, so a page of a
            # list query (filtered by this column, oldest first) reads only that page's rows.
            column = column_name(attr)
            statements += [
                f"DROP INDEX IF EXISTS {table}_{column}_idx",  # its first shape had no order
                f"CREATE INDEX IF NOT EXISTS {table}_{column}_seek_idx "
                f"ON {table} (account_id, {column}, created_at, id)",
            ]
    if element.listed_by_status:
        statements.append(
            f"CREATE INDEX IF NOT EXISTS {table}_status_seek_idx "
            f"ON {table} (account_id, status, created_at, id)"
        )
    statements += tenant_policy(table)
    return ";\n".join(statements) + ";"


def tenant_policy(table: str) -> list[str]:
    """A read-side table under the event store's row-level security, readable by the tenants' role
    (idempotent)."""
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS {table}_tenant_isolation ON {table}",
        f"CREATE POLICY {table}_tenant_isolation ON {table} "
        "USING (account_id = nullif(current_setting('erp.account_id', true), '')::uuid)",
        f"GRANT SELECT ON {table} TO {TENANT_ROLE}",
    ]


def _chunks(model: Model, size: int) -> Iterator[str]:
    elements = list(model.elements.values())
    for start in range(0, len(elements), size):
        yield "\n".join(element_ddl(e) for e in elements[start : start + size])


async def ensure_model_tables(connection: asyncpg.Connection[Any], model: Model, chunk: int = 50) -> int:
    """Create or extend every element's table; returns how many elements it covered."""
    for script in _chunks(model, chunk):
        async with connection.transaction():
            await connection.execute(script)
    return len(model.elements)
