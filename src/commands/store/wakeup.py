"""Waking projectors after an append, without making appends wait on each other.

A NOTIFY inside the appending transaction would serialise every commit in the
cluster (Postgres takes a global lock to queue notifications at commit), so
the append commits first and this sends the wake-up afterwards. Bursts
coalesce: at most one NOTIFY is in flight per process, and when appends keep
coming while one is in flight (load), the next waits `min_interval`; appends
one at a time are each announced at once. Each NOTIFY costs a transaction
here and a wake-up in every projector, and projectors woken less often apply
bigger batches. The payload names the stream types appended since
the last NOTIFY (empty: any), so a projector sleeps through appends it does not
project. A lost wake-up only costs latency; projectors also poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "erp_events"


def concerns(payload: str, stream_types: Iterable[str]) -> bool:
    """Whether a wake-up with this payload is for a projector of these stream types."""
    return not payload or not set(stream_types).isdisjoint(payload.split(","))


class ProjectorWakeup:
    """Call `poke(stream_types)` after each committed append."""

    def __init__(self, pool: asyncpg.Pool[Any], min_interval: float = 0.005) -> None:
        self._pool = pool
        self._min_interval = min_interval
        self._dirty = asyncio.Event()
        self._stream_types: set[str] = set()
        self._any = False
        self._task: asyncio.Task[None] | None = None

    def poke(self, stream_types: Iterable[str] = ()) -> None:
        """Announce an append of these stream types (none given: wake every projector)."""
        types = set(stream_types)
        self._any = self._any or not types
        self._stream_types |= types
        self._dirty.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            payload = "" if self._any else ",".join(sorted(self._stream_types))
            self._stream_types, self._any = set(), False
            try:
                await self._pool.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, payload)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
                log.warning("could not wake projectors: %s", error)
                await asyncio.sleep(0.5)
            else:
                if self._dirty.is_set():  # appends kept coming meanwhile: under load
                    await asyncio.sleep(self._min_interval)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
