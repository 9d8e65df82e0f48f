"""Each account's share of one API process: at most a few of its requests in progress at once.

A rate limit bounds how many commands an account sends per second; it does not stop one account
from holding every connection of the pool and every turn of the event loop at once, so that
another account's command queues behind sixty of its own. Here an account's requests beyond
`limit` wait their turn (first come, first served), parked and costing nothing, while the other
accounts' requests go on. A heavy request (a big body, a list page) takes the event loop for
milliseconds at a time, so an account has one of those in progress at most. Only accounts with
requests in progress take memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

HEAVY_BODY = 64 * 1024
"""Bytes of a request body from which a command is heavy: one at a time per account (a thousand
order lines take the event loop for milliseconds to decode, decide and store)."""


class AccountBulkhead:
    """At most `limit` requests of each account in progress in this process, and of those at most
    one heavy one (a big body, a page that may hold a megabyte)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"ERP_ACCOUNT_CONCURRENCY must be at least 1, got {limit}")
        self.limit = limit
        self._slots: dict[UUID, tuple[asyncio.Semaphore, asyncio.Semaphore, list[int]]] = {}

    @asynccontextmanager
    async def slot(self, account_id: UUID, *, heavy: bool = False) -> AsyncIterator[None]:
        """Hold one of the account's slots (waiting for one if all are taken) for the block; a
        `heavy` request first waits for the account's other heavy one to finish."""
        entry = self._slots.get(account_id)
        if entry is None:
            entry = self._slots[account_id] = (asyncio.Semaphore(self.limit), asyncio.Semaphore(1), [0])
        semaphore, heavy_one, users = entry
        users[0] += 1
        try:
            if heavy:
                async with heavy_one, semaphore:
                    yield
            else:
                async with semaphore:
                    yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._slots[account_id]

    def __len__(self) -> int:
        """Accounts with requests in progress or waiting."""
        return len(self._slots)
