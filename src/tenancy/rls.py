"""Row-level-security sessions: every tenant transaction runs as `erp_tenant` with its AccountId set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg

from core.db import TENANT_ROLE


def tenant_setup_sql(account_id: UUID) -> str:
    """The statements that scope the current transaction to one account.

    The AccountId is a parsed UUID, so inlining its canonical text is safe; doing
    so lets both statements travel in one round trip.
    """
    return (
        f"SET LOCAL ROLE {TENANT_ROLE}; SELECT set_config('erp.account_id', '{UUID(str(account_id))}', true)"
    )


@asynccontextmanager
async def tenant_transaction(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A connection inside a transaction that can only see and write `account_id`'s rows."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(tenant_setup_sql(account_id))
        yield connection
