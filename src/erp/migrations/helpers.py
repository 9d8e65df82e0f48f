"""Helpers for hand-written migrations."""

from __future__ import annotations

from alembic import op
from sqlalchemy.util import await_only


def run_script(sql: str) -> None:
    """Run a multi-statement SQL script through asyncpg's simple-query protocol.

    SQLAlchemy prepares each statement, which allows only one command at a
    time; DDL scripts with functions and DO blocks are clearer kept whole.
    """
    driver_connection = op.get_bind().connection.driver_connection
    assert driver_connection is not None
    await_only(driver_connection.execute(sql))
