"""Telling every API process to forget what it cached about an account, on one Redis channel.

An API caches each key's route and each account's custom-attribute definitions for a minute, so
that a command over 10,000 accounts does not pay two more round trips each time. When one of those
changes (a move switches an account's route, an attribute is defined), whoever changed it publishes
an invalidation and every API process forgets that account's entries at once. It is best effort:
with Redis away the message is lost, and the entries expire on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

import msgspec
from litestar.channels import ChannelsPlugin

from core.redis_client import REDIS_UNAVAILABLE
from core.redis_pubsub import Publisher

log = logging.getLogger(__name__)

CHANNEL = "erp.invalidations"

ROUTES = "Routes"
"""The API keys of the account: its route changed (a move)."""
CUSTOMISATIONS = "Customisations"
"""The account's custom-attribute definitions: one was defined."""
SUBJECT_KEYS = "SubjectKeys"
"""The keys of the account's data subjects: one was erased (API and worker processes alike)."""


class Invalidation(msgspec.Struct, frozen=True, rename="pascal"):
    cache: str
    account_id: UUID


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Invalidation).decode


class Invalidations:
    """Publishes invalidations; a message Redis cannot take is logged and dropped (entries expire)."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher

    async def publish(self, cache: str, account_id: UUID) -> None:
        try:
            await self._publisher.publish([(CHANNEL, _encode(Invalidation(cache, account_id)))])
        except REDIS_UNAVAILABLE as error:
            log.warning("could not tell the APIs to forget %s of account %s: %s", cache, account_id, error)


Forget = Callable[[UUID], None]


async def listen(channels: ChannelsPlugin, forget: dict[str, Forget], retry: float = 1.0) -> None:
    """Forget what each invalidation names, until cancelled; subscribes again after a Redis failure
    (entries cached meanwhile expire on their own)."""
    while True:
        try:
            async with channels.start_subscription(CHANNEL) as subscriber:
                async for message in subscriber.iter_events():
                    _dispatch(forget, message)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # Redis away: listen again shortly
            log.warning("not hearing cache invalidations (%s); listening again in %.0f s", error, retry)
        await asyncio.sleep(retry)


def _dispatch(forget: dict[str, Forget], message: Any) -> None:
    try:
        invalidation = _decode(message)
    except msgspec.DecodeError:
        log.warning("ignoring a message on %s that is not an invalidation: %r", CHANNEL, message[:200])
        return
    handler = forget.get(invalidation.cache)
    if handler is not None:
        handler(invalidation.account_id)


@contextlib.asynccontextmanager
async def listening(channels: ChannelsPlugin, forget: dict[str, Forget]) -> Any:
    """Listen for the block's duration."""
    task = asyncio.create_task(listen(channels, forget))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
