"""Following the store: a live projector wakes on NOTIFY (or polls), catches up, and waits again."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import asyncpg

from commands.store.wakeup import EVENTS_CHANNEL, concerns
from core import metrics
from queries.projector.batch import Projector


async def follow(
    projector: Projector,
    dsn: str,
    heartbeat: Callable[[], None] = lambda: None,
    poll_interval: float = 1.0,
    stop: asyncio.Event | None = None,
) -> None:
    """Keep `projector` current until `stop` is set: wake on NOTIFY (or every `poll_interval`), catch up.

    Wake-ups for stream types this projection does not project are ignored,
    and the lag gauge is refreshed at most once per `poll_interval`.
    Errors propagate, so the caller (a Temporal activity) retries with backoff.
    """
    wake = asyncio.Event()
    lag_read = -poll_interval
    listener = await asyncpg.connect(dsn)
    try:
        stream_types = projector.projection.stream_types

        def woken(_connection: object, _pid: int, _channel: str, payload: str) -> None:
            if concerns(payload, stream_types):
                wake.set()

        await listener.add_listener(EVENTS_CHANNEL, woken)
        while stop is None or not stop.is_set():
            heartbeat()
            if listener.is_closed():
                raise ConnectionError("the LISTEN connection to Postgres was closed")
            wake.clear()
            if await projector.run_batch():
                continue
            if projector.notifier is not None:
                await projector.notifier.flush_pending()
            if time.monotonic() - lag_read >= poll_interval:
                lag_read = time.monotonic()
                backlog = await projector.backlog()
                metrics.LAG[(projector.projection.name, projector.database)] = backlog
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=poll_interval)
    finally:
        await listener.close()
