"""Waking projectors after an append, without making appends wait on each other.

A NOTIFY inside the appending transaction would serialise every commit in the
cluster (Postgres takes a global lock to queue notifications at commit), so
the append commits first and this sends the wake-up afterwards. Bursts
coalesce: at most one NOTIFY is in flight per process, and under load at most
one per `min_interval` (a lone append is announced at once). Each NOTIFY costs
a transaction here and a wake-up in every projector, and projectors woken less
often apply bigger batches. A lost wake-up only costs latency; projectors also
poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "erp_events"


class ProjectorWakeup:
    """Call `poke()` after each committed append."""

    def __init__(self, pool: asyncpg.Pool[Any], min_interval: float = 0.005) -> None:
        self._pool = pool
        self._min_interval = min_interval
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        self._dirty.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._pool.execute(f"NOTIFY {EVENTS_CHANNEL}")
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
                log.warning("could not wake projectors: %s", error)
                await asyncio.sleep(0.5)
            else:
                await asyncio.sleep(self._min_interval)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
