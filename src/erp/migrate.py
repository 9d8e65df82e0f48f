"""Schema migrations (Alembic), run by `erp migrate`, `erp dev` and the test fixtures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config

from erp.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(settings: Settings) -> Config:
    """An Alembic config pointing at our migrations and the configured database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", settings.sqlalchemy_url)
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the database up to `revision`, then create or extend the model's read-model tables."""
    command.upgrade(alembic_config(settings), revision)
    if revision == "head":
        asyncio.run(_model_tables(settings))


async def _model_tables(settings: Settings) -> None:
    from commands.erp_model import ERP
    from queries.customer_names import ensure_customer_names
    from queries.model_tables import ensure_model_tables

    connection = await asyncpg.connect(settings.database_url)
    try:
        await ensure_model_tables(connection, ERP)
        await ensure_customer_names(connection)
    finally:
        await connection.close()


async def upgrade_async(settings: Settings, revision: str = "head") -> None:
    """`upgrade`, run in a thread: Alembic's env drives its own event loop."""
    await asyncio.to_thread(upgrade, settings, revision)
