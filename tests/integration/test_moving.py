"""A move's steps on their own (no workflow): each may run again and goes on where it stopped; a copy
that differs from the source abandons the move, and the account goes on where it was; rows are
removed only from a database the account does not live in."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from uuid import UUID

import pytest

from commands.service import CommandService
from commands.store.event_store import EventStore
from core.settings import Settings
from erp.devserver import drop_database
from tenancy.catalog import AccountCatalog
from tenancy.fences import AccountElsewhere, fence_of
from tenancy.moving import AccountMover, MoveAbandoned, MoveStep
from tenancy.routing import Databases
from tests.conftest import fresh_database, make_account


@pytest.fixture
async def databases(settings: Settings) -> AsyncIterator[Databases]:
    """Two tenant databases of the test's own: `main` (the catalog) and `big`."""
    main, big = await fresh_database(), await fresh_database()
    both = await Databases(
        replace(settings, database_url=main, extra_databases=f"big={big}"), min_size=1, max_size=4
    ).open()
    try:
        yield both
    finally:
        await both.close()
        await drop_database(main)
        await drop_database(big)


def order() -> bytes:
    line = {"ProductCode": "P", "Quantity": 1, "UnitPrice": "1.00"}
    return json.dumps({"OrderId": str(uuid.uuid4()), "CustomerName": "Mover", "OrderLines": [line]}).encode()


async def place(databases: Databases, database: str, account_id: UUID, count: int) -> None:
    service = CommandService(databases.pool(database), EventStore())
    for _ in range(count):
        await service.execute(account_id, service.parse("PlaceOrder", order()))


async def events_in(databases: Databases, database: str, account_id: UUID) -> int:
    count: int = await databases.pool(database).fetchval(
        "SELECT count(*) FROM events WHERE account_id = $1", account_id
    )
    return count


async def test_each_step_may_run_again_and_a_copy_that_differs_is_abandoned(databases: Databases) -> None:
    account_id = await make_account(databases.main)
    await place(databases, "main", account_id, 12)
    mover = AccountMover(databases, AccountCatalog(databases))
    step = MoveStep(account_id, "main", "big", uuid.uuid4())

    await mover.prepare(step)
    await mover.prepare(step)  # again: this move's copy stays
    assert await mover.copy_events(step) == 12
    assert await mover.copy_events(step) == 0  # again: nothing left to copy
    await place(databases, "main", account_id, 3)  # the account keeps working meanwhile
    assert await mover.copy_events(step) == 3
    await mover.fence_source(step)
    with pytest.raises(AccountElsewhere):
        await place(databases, "main", account_id, 1)

    # Something the source does not have turns up in the copy: the move must not switch.
    await databases.pool("big").execute(
        "INSERT INTO command_log (account_id, command_id, command_name, request_hash, result) "
        "VALUES ($1, $2, 'PlaceOrder', '\\x00', '{}')",
        account_id,
        uuid.uuid4(),
    )
    with pytest.raises(MoveAbandoned, match="differs"):
        await mover.finish_copy(step)
    await mover.abandon(step)
    await mover.abandon(step)  # again: nothing more to undo

    assert await fence_of(databases.main, account_id) is None
    assert await fence_of(databases.pool("big"), account_id) is None
    assert await events_in(databases, "big", account_id) == 0
    await place(databases, "main", account_id, 1)  # writes go on where the account lives
    assert await events_in(databases, "main", account_id) == 16


async def test_rows_are_removed_only_where_the_account_does_not_live(databases: Databases) -> None:
    account_id = await make_account(databases.main)
    await place(databases, "main", account_id, 2)
    mover = AccountMover(databases, AccountCatalog(databases))
    with pytest.raises(RuntimeError, match="lives in main"):
        await mover.purge(account_id, "main")  # no fence: it lives there
    step = MoveStep(account_id, "main", "big", uuid.uuid4())
    await mover.fence_source(step)
    with pytest.raises(RuntimeError, match="lives in main"):
        await mover.purge(account_id, "main")  # leaving is not left
    assert await events_in(databases, "main", account_id) == 2


async def test_an_abandoned_move_leaves_the_next_one_a_clean_target(databases: Databases) -> None:
    account_id = await make_account(databases.main)
    await place(databases, "main", account_id, 5)
    mover = AccountMover(databases, AccountCatalog(databases))
    first = MoveStep(account_id, "main", "big", uuid.uuid4())
    await mover.prepare(first)
    await mover.copy_events(first)
    # The first move's worker died here; a new move of the account starts over.
    second = MoveStep(account_id, "main", "big", uuid.uuid4())
    await mover.prepare(second)
    assert await events_in(databases, "big", account_id) == 0
    assert await mover.copy_events(second) == 5
    await mover.fence_source(second)
    assert await mover.finish_copy(second) == 0
    await mover.switch(second)
    assert await mover.purge(account_id, "main") > 0
    assert await events_in(databases, "main", account_id) == 0
    assert await events_in(databases, "big", account_id) == 5
    held = await fence_of(databases.main, account_id)
    assert held is not None and held[:2] == ("left", "big")
    catalog = await databases.main.fetchval("SELECT database FROM accounts WHERE account_id = $1", account_id)
    assert catalog == "big"
