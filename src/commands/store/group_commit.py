"""Group commit: requests from concurrent callers go to the database together, one batch per round trip.

Requests are spread over a few lanes by key (the account). A lane with nothing
in flight sends a request at once; while a batch is in flight, new requests
queue and leave together as the lane's next batch. So a lone caller never
waits for company, and under load many appends share one transaction and one
WAL flush instead of paying for their own.

A batch holds at most one request per key, and a key always uses the same
lane: requests of one account are sent in the order they came, one at a time,
and never contend with each other for locks.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeAlias, TypeVar, Union

R = TypeVar("R")
T = TypeVar("T")

Outcome: TypeAlias = Union[T, Exception]  # noqa: UP007 (a generic alias needs Union)
"""Each request's own answer: a value, or the exception its caller should get."""


class GroupCommit(Generic[R, T]):
    """Sends requests in batches through `send`, which answers each request of a batch separately."""

    def __init__(
        self,
        send: Callable[[list[R]], Awaitable[list[Outcome[T]]]],
        key: Callable[[R], Hashable],
        *,
        lanes: int = 2,
        max_batch: int = 50,
    ) -> None:
        if lanes < 1 or max_batch < 1:
            raise ValueError("a group commit needs at least one lane and room for one request")
        self._send = send
        self._key = key
        self._max_batch = max_batch
        self._queues: list[list[tuple[R, asyncio.Future[T]]]] = [[] for _ in range(lanes)]
        self._busy = [False] * lanes
        self._tasks: set[asyncio.Task[None]] = set()
        self.batch_sizes: Callable[[int], None] | None = None
        """Told the size of each batch sent (for metrics)."""

    async def submit(self, request: R) -> T:
        """The request's outcome, once the batch that carried it has been answered."""
        lane = hash(self._key(request)) % len(self._queues)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queues[lane].append((request, future))
        if not self._busy[lane]:
            self._busy[lane] = True
            # A fresh context: the lane serves many callers, it must not run inside the first one's span.
            task = asyncio.create_task(self._drain(lane), context=contextvars.Context())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    def _next_batch(self, lane: int) -> list[tuple[R, asyncio.Future[T]]]:
        """The oldest waiting request of each key, up to `max_batch`; the rest keep their place."""
        batch: list[tuple[R, asyncio.Future[T]]] = []
        waiting: list[tuple[R, asyncio.Future[T]]] = []
        keys: set[Hashable] = set()
        for request, future in self._queues[lane]:
            if future.done():
                continue  # its caller gave up before it was sent
            key = self._key(request)
            if key in keys or len(batch) == self._max_batch:
                waiting.append((request, future))
            else:
                keys.add(key)
                batch.append((request, future))
        self._queues[lane] = waiting
        return batch

    async def _drain(self, lane: int) -> None:
        batch: list[tuple[R, asyncio.Future[T]]] = []
        try:
            while batch := self._next_batch(lane):
                if self.batch_sizes is not None:
                    self.batch_sizes(len(batch))
                try:
                    outcomes = await self._send([request for request, _ in batch])
                except Exception as error:
                    outcomes = [error] * len(batch)
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        except asyncio.CancelledError:
            for _, future in batch + self._queues[lane]:
                future.cancel()
            self._queues[lane] = []
            raise
        finally:
            self._busy[lane] = False
