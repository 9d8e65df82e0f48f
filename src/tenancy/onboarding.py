"""Onboarding steps, each idempotent so a workflow can retry them: partition, then activate."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg


def partition_name(account_id: UUID) -> str:
    return f"events_{account_id.hex}"


async def create_event_partition(connection: asyncpg.Connection[Any], account_id: UUID) -> str:
    """The account's own partition of the event store, as immutable as its parent (idempotent)."""
    name = partition_name(account_id)
    await connection.execute(
        f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF events "
        f"FOR VALUES IN ('{UUID(str(account_id))}'); "
        # Row triggers (no UPDATE, no DELETE) are inherited; statement triggers are not.
        f"CREATE OR REPLACE TRIGGER events_no_truncate BEFORE TRUNCATE ON {name} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION erp_events_are_immutable()"
    )
    return name
