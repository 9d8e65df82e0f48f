"""`erp migrate`: create each tenant database if needed and apply every migration to it."""

from __future__ import annotations

import asyncio

from core.settings import Settings
from erp.cli.common import console, require_services


def migrate() -> None:
    """Create the database if needed and apply every migration."""
    from erp.devserver import create_database
    from erp.embedded import shown
    from erp.migrate import upgrade

    settings = Settings()
    require_services(settings, command="erp migrate", redis=False)
    for name, url in settings.databases.items():
        if asyncio.run(create_database(url)):
            console.print(f"created database {name}: {shown(url)}")
        upgrade(settings.for_database(name))
        console.print(f"migrations applied to {name}")
