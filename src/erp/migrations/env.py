"""Alembic environment: the versioned migrations, then the repeatable steps (`repeatable.py`).

The versioned migrations run in one transaction over SQLAlchemy's asyncpg dialect. When that
leaves the database at head, the store functions are applied in the same transaction (so there is
no moment without them, and a function that does not compile undoes the upgrade), and after it
commits the read-model tables and the customer-name triggers in transactions of their own. So
`alembic upgrade head` alone gives the whole schema.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.util import await_only

from erp.migrations import repeatable

config = context.config


def _moves_the_revision() -> bool:
    """upgrade, downgrade and stamp name a destination; current, check and history do not."""
    return "destination_rev" in context.get_context().opts


def _run(connection: Connection) -> None:
    context.configure(connection=connection)
    driver: asyncpg.Connection[Any] = connection.connection.driver_connection
    with context.begin_transaction():
        context.run_migrations()
        at_head = _moves_the_revision() and set(context.get_context().get_current_heads()) == set(
            context.script.get_heads()
        )
        if at_head:
            assert driver.is_in_transaction(), "the store functions go in the migrations' transaction"
            await_only(repeatable.apply_store_functions(driver))
    if at_head:
        assert not driver.is_in_transaction(), "the read models take transactions of their own"
        await_only(repeatable.apply_read_models(driver))


async def _main() -> None:
    engine = create_async_engine(config.get_main_option("sqlalchemy.url") or "")
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


asyncio.run(_main())
