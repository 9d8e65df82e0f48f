"""Schema migrations (Alembic), run by `erp migrate`, `erp dev` and the test fixtures.

`alembic upgrade` does it all (`migrations/env.py`): the versioned migrations, then, at head, the
repeatable steps (store functions, read-model tables, customer-name triggers; `migrations/repeatable.py`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from core.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(settings: Settings) -> Config:
    """An Alembic config pointing at our migrations and the configured database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", settings.sqlalchemy_url)
    config.set_main_option("erp.partitions", str(settings.partitions))
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the database up to `revision`; at head that includes the repeatable steps."""
    command.upgrade(alembic_config(settings), revision)


async def upgrade_async(settings: Settings, revision: str = "head") -> None:
    """`upgrade`, run in a thread: Alembic's env drives its own event loop."""
    await asyncio.to_thread(upgrade, settings, revision)
