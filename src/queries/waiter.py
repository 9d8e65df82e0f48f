"""Consistency waits: block a query until its read model has caught up with a ConsistencyToken."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
from litestar.channels import ChannelsPlugin
from redis.exceptions import RedisError

from queries import fan_out_jobs
from queries.notifications import Notification, channel_for
from queries.shown import Scope

RECHECK_INTERVAL = 0.5
"""How often a waiter re-reads checkpoints in case a notification was lost."""
POLL_INTERVAL = 0.05
"""How often a waiter re-reads checkpoints while Redis cannot be listened to."""

log = logging.getLogger(__name__)


def _reached(targets: dict[str, int], positions: dict[str, int]) -> bool:
    return all(positions.get(t, 0) >= p for t, p in targets.items())


class ConsistencyWaiter:
    """Waits on the account's Redis channel, with checkpoint reads as the ground truth."""

    def __init__(self, channels: ChannelsPlugin) -> None:
        self._channels = channels
        self._decode = msgspec.json.Decoder(Notification).decode

    async def wait(
        self, pool: asyncpg.Pool[Any], account_id: UUID, scope: Scope, targets: dict[str, int], within: float
    ) -> bool:
        """True once a read model (what a wait on it looks at: `scope`) shows `targets` for the
        account; False after `within` seconds. Any notification of the read models in its scope that
        reaches a target has the positions read again."""
        targets = {t: p for t, p in targets.items() if t in scope.owners}
        if not targets:
            return True
        types = list(targets)

        async def read() -> dict[str, int]:
            return await fan_out_jobs.positions(pool, scope.owners, scope.fan_outs, account_id, types)

        positions = await read()
        if _reached(targets, positions):
            return True
        deadline = time.monotonic() + within
        try:
            subscriber = await self._channels.subscribe(channel_for(account_id))
        except RedisError as error:
            # Notifications only make the wait quicker; the checkpoints are the answer.
            log.warning("waiting without notifications, Redis is unavailable: %r", error)
            while time.monotonic() < deadline:
                await asyncio.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
                if _reached(targets, await read()):
                    return True
            return False
        events = subscriber.iter_events()
        receive: asyncio.Task[bytes] | None = None
        try:
            # Read again now that we listen: a notification sent before we subscribed is not lost.
            positions = await read()
            next_check = time.monotonic() + RECHECK_INTERVAL
            while not _reached(targets, positions):
                now = time.monotonic()
                if now >= deadline:
                    return False
                if now >= next_check:
                    positions = await read()
                    next_check = now + RECHECK_INTERVAL
                    continue
                if receive is None:
                    receive = asyncio.ensure_future(anext(events))
                done, _ = await asyncio.wait({receive}, timeout=min(deadline, next_check) - now)
                if not done:
                    continue
                note = self._decode(receive.result())
                receive = None
                if note.projection in scope.fan_outs and note.position >= targets.get(
                    note.stream_type, note.position + 1
                ):
                    # The word of a projector or a fan-out, whichever database it works on (while an
                    # account moves, two do): the answer is this database's checkpoints and jobs.
                    positions = await read()
                    next_check = time.monotonic() + RECHECK_INTERVAL
            return True
        finally:
            if receive is not None:
                receive.cancel()
            try:
                await self._channels.unsubscribe(subscriber)
            except (RedisError, RuntimeError) as error:
                # A connection Redis dropped has no subscription left; while the channels plugin
                # reconnects, its reader holds the connection and the unsubscribe cannot be sent
                # ("readuntil() called while another coroutine is already waiting"). The answer
                # stands either way: the subscription dies with the old connection.
                log.info("could not unsubscribe after a consistency wait: %r", error)
