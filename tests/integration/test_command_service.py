"""The command pipeline against real Postgres: stale caches, pinned revisions, retries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any
from uuid import UUID

import asyncpg
import pytest

import commands.service
from commands.errors import BusinessRuleViolation
from commands.service import CommandService
from commands.store.event_store import ConcurrencyConflict, EventStore
from commands.stream_cache import StreamCache


def place(order_id: UUID, **extra: Any) -> bytes:
    return json.dumps(
        {
            "OrderId": str(order_id),
            "CustomerName": "Ada",
            "OrderLines": [{"ProductCode": "P", "Quantity": 1, "UnitPrice": "1.00"}],
            **extra,
        }
    ).encode()


def cancel(order_id: UUID, **extra: Any) -> bytes:
    return json.dumps({"OrderId": str(order_id), "Reason": "r", **extra}).encode()


async def events_of(pool: asyncpg.Pool[Any], account_id: UUID, stream_id: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT payload_item_name FROM events WHERE account_id = $1 AND stream_id = $2 "
        "ORDER BY stream_revision",
        account_id,
        stream_id,
    )
    return [r[0] for r in rows]


def two_processes(pool: asyncpg.Pool[Any]) -> tuple[CommandService, CommandService]:
    """Two API processes: same database, caches of their own."""
    return CommandService(pool, EventStore(), cache=StreamCache()), CommandService(
        pool, EventStore(), cache=StreamCache()
    )


async def test_a_stale_cache_never_decides(pool: asyncpg.Pool[Any], account_id: UUID) -> None:
    a, b = two_processes(pool)
    order_id = uuid.uuid4()
    await a.execute(account_id, a.parse("PlaceOrder", place(order_id)))  # a caches it as Placed
    await b.execute(account_id, b.parse("CancelOrder", cancel(order_id)))
    with pytest.raises(BusinessRuleViolation, match="Cancelled"):
        await a.execute(account_id, a.parse("CancelOrder", cancel(order_id)))
    assert await events_of(pool, account_id, f"Order-{order_id}") == ["OrderPlaced", "OrderCancelled"]


async def test_a_stale_cache_does_not_turn_a_good_pinned_revision_into_409(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    a = CommandService(pool, EventStore(), cache=StreamCache())
    order_id = uuid.uuid4()
    placed = await a.execute(account_id, a.parse("PlaceOrder", place(order_id)))
    assert placed.revision == 1
    result = await a.execute(account_id, a.parse("CancelOrder", cancel(order_id, ExpectedRevision=1)))
    assert result.revision == 2


async def test_pinned_stale_revision_is_409_and_writes_nothing(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    a, b = two_processes(pool)
    order_id = uuid.uuid4()
    await a.execute(account_id, a.parse("PlaceOrder", place(order_id)))
    with pytest.raises(ConcurrencyConflict):
        await b.execute(account_id, b.parse("CancelOrder", cancel(order_id, ExpectedRevision=0)))
    assert await events_of(pool, account_id, f"Order-{order_id}") == ["OrderPlaced"]


async def test_placing_an_existing_order_from_a_cold_cache_is_refused(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """The cold process first assumes the stream is new; the store's check sends it to a real load."""
    a, b = two_processes(pool)
    order_id = uuid.uuid4()
    await a.execute(account_id, a.parse("PlaceOrder", place(order_id)))
    with pytest.raises(BusinessRuleViolation, match="already exists"):
        await b.execute(account_id, b.parse("PlaceOrder", place(order_id)))
    assert await events_of(pool, account_id, f"Order-{order_id}") == ["OrderPlaced"]


async def test_concurrent_cancels_of_one_order_cancel_it_once(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """No lost update: of many processes racing to cancel, exactly one succeeds."""
    services = [CommandService(pool, EventStore(), cache=StreamCache()) for _ in range(4)] + [
        CommandService(pool, EventStore())
    ]
    order_id = uuid.uuid4()
    for service in services:  # every cache now holds the Placed order
        with contextlib.suppress(BusinessRuleViolation):
            await service.execute(account_id, service.parse("PlaceOrder", place(order_id)))

    async def try_cancel(service: CommandService) -> bool:
        try:
            await service.execute(account_id, service.parse("CancelOrder", cancel(order_id)))
        except BusinessRuleViolation:
            return False
        return True

    outcomes = await asyncio.gather(*(try_cancel(s) for s in services * 4))
    assert outcomes.count(True) == 1
    assert await events_of(pool, account_id, f"Order-{order_id}") == ["OrderPlaced", "OrderCancelled"]


async def test_a_command_logged_under_a_uuid_keys_old_id_is_still_answered_from_the_log(
    pool: asyncpg.Pool[Any], account_id: UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before keys were compared by their exact text, a UUID key's command id was the UUID itself.
    A command logged so and retried after the upgrade with its key (any spelling the old version read
    as that UUID) gets its first answer; no new command is ever logged under such an id."""
    service = CommandService(pool, EventStore())
    key, order_id = str(uuid.uuid4()), uuid.uuid4()
    monkeypatch.setattr(commands.service, "command_id_for", lambda k: (UUID(k), True))  # the old version
    first = await service.execute(account_id, service.parse("PlaceOrder", place(order_id)), key)
    monkeypatch.undo()

    for spelling in (key, key.upper()):
        again = await service.execute(account_id, service.parse("PlaceOrder", place(order_id)), spelling)
        assert again == first
    assert await events_of(pool, account_id, f"Order-{order_id}") == ["OrderPlaced"]

    # A new command with a UUID key is logged under the key's text, never under the UUID.
    other_key, other_id = str(uuid.uuid4()), uuid.uuid4()
    await service.execute(account_id, service.parse("PlaceOrder", place(other_id)), other_key)
    logged = await pool.fetchval(
        "SELECT count(*) FROM command_log WHERE account_id = $1 AND command_id = $2",
        account_id,
        UUID(other_key),
    )
    assert logged == 0
    upper = await service.execute(
        account_id, service.parse("PlaceOrder", place(uuid.uuid4())), other_key.upper()
    )
    assert upper.stream_id != f"Order-{other_id}"
