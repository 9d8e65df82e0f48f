"""The SQLAlchemy metadata (used by queries and tooling) matches what the migrations build."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import commands.tables  # noqa: F401
import queries.tables  # noqa: F401
import tenancy.tables  # noqa: F401  (registers the tables)
from erp.db import metadata
from erp.settings import Settings

GENERATED = ("events_", "rm_")
"""Per-account partitions of `events` (made at onboarding) and read-model tables (generated from the
model) are not declared in the metadata."""


def _include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return not (table is not None and (table.startswith(GENERATED) or table == "alembic_version"))


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"include_object": _include, "compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrations_and_metadata_agree(settings: Settings) -> None:
    engine = create_async_engine(settings.sqlalchemy_url)
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(_diff)
    finally:
        await engine.dispose()
    assert diff == []
