"""Fences: how a move holds an account's writes in one tenant database (`fences.sql`, beside this).

A fence says the account does not live here (`arriving`: a move copies it in), is about to leave
(`leaving`: its last data is being copied out) or has left (`left`). Every write of the account
holds its write lock and looks for a fence first, so a write never lands in a database the account
is leaving or has left; it is refused with `AccountElsewhere`, and tried again on a fresh route.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import asyncpg

ARRIVING = "arriving"
LEAVING = "leaving"
LEFT = "left"

FENCED = "ER503"
"""The SQLSTATE of a write refused by a fence (`erp_write_unfenced`)."""


class AccountElsewhere(Exception):
    """A write reached a database where a move has fenced the account: nothing was written. The
    caller tries again shortly, on a fresh route."""

    def __init__(self, account_id: UUID, state: str, database: str) -> None:
        self.account_id = account_id
        self.state = state
        self.database = database
        doing = "has moved" if state == LEFT else "is moving"
        super().__init__(f"account {account_id} {doing} to another tenant database; try again shortly")

    @classmethod
    def from_detail(cls, account_id: UUID, detail: str) -> AccountElsewhere:
        """From the fence's JSON (`{"State", "Database"}`), as the store functions give it."""
        fence = json.loads(detail)
        return cls(account_id, fence["State"], fence["Database"])


async def write_unfenced(connection: asyncpg.Connection[Any], account_id: UUID) -> None:
    """Take the account's write lock for this transaction; AccountElsewhere if it is fenced here."""
    try:
        await connection.execute("SELECT erp_write_unfenced($1)", account_id)
    except asyncpg.PostgresError as error:
        if error.sqlstate == FENCED:
            raise AccountElsewhere.from_detail(account_id, str(error.detail)) from None
        raise


async def fence(
    connection: asyncpg.Connection[Any], account_id: UUID, state: str, other: str, move_id: UUID
) -> None:
    """Fence the account in this database, once every write that did not see the fence has ended
    (in the caller's transaction: the fence holds from its commit)."""
    await connection.execute("SELECT erp_fence_account($1, $2, $3, $4)", account_id, state, other, move_id)


async def fence_of(
    executor: asyncpg.Connection[Any] | asyncpg.Pool[Any], account_id: UUID
) -> tuple[str, str, UUID] | None:
    """(state, other database, move id) of the account's fence here, or None."""
    row = await executor.fetchrow(
        "SELECT state, other, move_id FROM account_fences WHERE account_id = $1", account_id
    )
    return None if row is None else (row["state"], row["other"], row["move_id"])


async def lift(executor: asyncpg.Connection[Any] | asyncpg.Pool[Any], account_id: UUID) -> None:
    """The account's writes are taken here again (it has arrived, or its move was abandoned)."""
    await executor.execute("DELETE FROM account_fences WHERE account_id = $1", account_id)
