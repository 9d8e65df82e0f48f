"""Stopping cleanly on a signal: long-running commands (`erp dev`, `erp bench`) clean up after themselves."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


async def stoppable(work: Awaitable[T]) -> T:
    """Await `work`; SIGTERM, SIGINT or SIGHUP cancels it, so its clean-up (databases, servers) runs.

    Handled by the loop rather than left to Python's defaults, which a shell ignores for SIGINT in
    background jobs and which leave everything behind on SIGTERM or a hang-up.
    """
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for stop in STOP_SIGNALS:
        loop.add_signal_handler(stop, task.cancel)
    try:
        return await work
    finally:
        for stop in STOP_SIGNALS:
            loop.remove_signal_handler(stop)
