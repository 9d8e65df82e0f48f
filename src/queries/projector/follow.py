"""Following the store: a live projector wakes on NOTIFY (or polls), catches up, and waits again."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import asyncpg

from commands.store.wakeup import EVENTS_CHANNEL, concerns
from core import metrics
from queries import chained, fan_out_jobs
from queries.model_projection import ModelProjection
from queries.projector.batch import Projector
from queries.projector.fan_out import FanOut


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

    Beside it, on connections of their own, the read model's fan-out (`queries.projector.fan_out`)
    refreshes what it copies from other read models, woken by the jobs' NOTIFY, and the read models
    chained to it (`queries.chained`) take the changes its batches make.
    """
    wake = asyncio.Event()
    lag_read = -poll_interval
    listener = await asyncpg.connect(dsn)
    beside: list[asyncio.Task[None]] = []
    try:
        stream_types = projector.projection.stream_types

        def woken(_connection: object, _pid: int, _channel: str, payload: str) -> None:
            if concerns(payload, stream_types):
                wake.set()

        await listener.add_listener(EVENTS_CHANNEL, woken)
        projection = projector.projection
        if isinstance(projection, ModelProjection):
            # Even a read model that copies nothing has its fan-out: jobs an earlier release recorded
            # into it are dropped, not left to hold consistency waits.
            fan_out = FanOut(projector.pool, projection, projector.notifier)
            jobs = asyncio.Event()
            await listener.add_listener(
                fan_out_jobs.CHANNEL,
                lambda _c, _p, _ch, name: jobs.set() if name == projection.name else None,
            )
            beside.append(asyncio.create_task(fan_out.run(jobs, stop, poll_interval)))
            if projection.feeds:
                changed = asyncio.Event()

                def took(_connection: object, _pid: int, _channel: str, name: str) -> None:
                    if name == projection.name:
                        changed.set()

                await listener.add_listener(chained.CHANNEL, took)
                followers = [
                    chained.ChainedFollower(c, projector.pool, projector.notifier) for c in projection.feeds
                ]
                beside += [asyncio.create_task(f.run(changed, stop, poll_interval)) for f in followers]
        while stop is None or not stop.is_set():
            heartbeat()
            if listener.is_closed():
                raise ConnectionError("the LISTEN connection to Postgres was closed")
            for task in beside:
                if task.done() and (stop is None or not stop.is_set()):
                    task.result()  # its error fails the loop, and the activity is retried
                    raise RuntimeError("a task beside the projector stopped")
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
        for task in beside:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await listener.close()
