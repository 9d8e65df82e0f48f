"""A neighbour's load, sent from a process of its own.

A neighbour is another client: sent from the measuring client's own event loop, its load delayed
the measured requests there, before they reached the API (encoding a thousand-line order in
aiohttp takes milliseconds, and 64 flooding connections take turns with the one measured). So
the load runs in a child process with its own loop and connections, switched on and off by the
bench; it counts its answers by status, and the bytes it read, in shared memory.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

COUNTED = ("200", "429", "other", "failed", "bytes")
"""What a load counts: answers by status (`other`: neither 200 nor 429), requests that got no
answer (`failed`: the connection closed or refused), and the bytes it read."""

Load = Callable[[aiohttp.ClientSession, "Switch", Any, int], Awaitable[None]]
"""Connection n's loop (`load(session, switch, argument, n)`): sends requests while `switch.on`,
counting its answers. A module-level function, so that the child process can import it."""


class Switch:
    """The child's view: whether the load is on, and its counters."""

    def __init__(self, on: Any, counts: list[Any]) -> None:
        self._on = on
        self._counts = counts

    @property
    def on(self) -> bool:
        return bool(self._on.is_set())

    def count(self, status: int, read: int = 0) -> None:
        key = str(status) if str(status) in COUNTED else "other"
        self._counts[COUNTED.index(key)].value += 1
        self._counts[COUNTED.index("bytes")].value += read

    async def failed(self) -> None:
        """Count a request that got no answer, and pause a moment before the next."""
        self._counts[COUNTED.index("failed")].value += 1
        await asyncio.sleep(0.01)


def _child(
    load: Load, argument: Any, connections: int, on: Any, idle: Any, quit_: Any, counts: list[Any]
) -> None:
    asyncio.run(_serve(load, argument, connections, Switch(on, counts), on, idle, quit_))


async def _serve(
    load: Load, argument: Any, connections: int, switch: Switch, on: Any, idle: Any, quit_: Any
) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        while not quit_.is_set():
            if not await asyncio.to_thread(on.wait, 0.1):
                continue
            idle.clear()
            await asyncio.gather(*(load(session, switch, argument, n) for n in range(connections)))
            idle.set()


class Neighbour:
    """`connections` connections, each running `load`, in a child process while switched on."""

    def __init__(self, load: Load, argument: Any, connections: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._on = context.Event()
        self._idle = context.Event()
        self._idle.set()
        self._quit = context.Event()
        self._counts = [context.Value("d", 0.0, lock=False) for _ in COUNTED]
        self._process = context.Process(
            target=_child,
            args=(load, argument, connections, self._on, self._idle, self._quit, self._counts),
            daemon=True,
        )

    def __enter__(self) -> Neighbour:
        self._process.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._quit.set()
        self._on.clear()
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()

    def counts(self) -> Counter[str]:
        """What the load has counted so far."""
        return Counter({key: int(self._counts[i].value) for i, key in enumerate(COUNTED)})

    def start(self) -> None:
        self._on.set()

    async def stop(self) -> None:
        """Switch the load off, and wait until its last requests are answered (RuntimeError if the
        child process died: a bench must not wait for it forever)."""
        self._on.clear()
        await asyncio.sleep(0.05)  # the child sees `on` cleared before it is asked whether it is idle
        while not self._idle.is_set():
            if not self._process.is_alive():
                raise RuntimeError(f"the neighbour's load process died (exit code {self._process.exitcode})")
            await asyncio.sleep(0.05)
