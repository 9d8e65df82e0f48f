"""One notification stream on the machine's Redis: a client too slow for its notifications is told
(`event: overflow`, carrying what it was told) and its stream closed, rather than lose some in
silence; a server that begins to stop ends its streams at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from litestar.response.sse import ServerSentEventMessage

from core.redis_client import redis_client
from core.settings import Settings
from core.subscribers import OverflowingSubscriber
from queries.notification_stream import NotificationStreams
from queries.notifications import channel_for
from tenancy.routing import Databases, Route

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def channels() -> AsyncIterator[ChannelsPlugin]:
    plugin = ChannelsPlugin(
        backend=RedisChannelsPubSubBackend(redis=redis_client(REDIS)),
        arbitrary_channels_allowed=True,
        subscriber_max_backlog=5,
        subscriber_backlog_strategy="dropleft",
        subscriber_class=OverflowingSubscriber,
    )
    async with plugin:
        yield plugin


async def _subscribers(channel: str) -> int:
    client = redis_client(REDIS)
    try:
        counts = await client.pubsub_numsub(channel)
        return int(counts[0][1])
    finally:
        await client.aclose()


async def _until_subscribers(channel: str, count: int) -> None:
    for _ in range(500):
        if await _subscribers(channel) == count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{channel} never had {count} subscribers")


async def _publish(channel: str, positions: range) -> None:
    client = redis_client(REDIS)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for p in positions:
                pipe.publish(channel, f'{{"Projection":"orders","StreamType":"Order","Position":{p}}}')
            await pipe.execute()
    finally:
        await client.aclose()


def _streams(channels: ChannelsPlugin, draining: asyncio.Event) -> NotificationStreams:
    return NotificationStreams(channels, Databases(Settings()), ping=30, draining=draining)


async def test_a_stream_read_too_slowly_is_told_and_closed(channels: ChannelsPlugin) -> None:
    account = uuid.uuid4()
    channel = channel_for(account)
    stream = _streams(channels, asyncio.Event()).events(Route(account, "main"), None)
    first = asyncio.ensure_future(anext(stream))
    await _until_subscribers(channel, 1)
    await _publish(channel, range(1, 2))
    event = await asyncio.wait_for(first, 10)
    assert (event.id, event.data) == (
        "orders.Order=1",
        '{"Projection":"orders","StreamType":"Order","Position":1}',
    )

    # The client reads nothing while 20 more arrive: its backlog holds 5.
    await _publish(channel, range(2, 22))
    await asyncio.sleep(0.5)
    told = await asyncio.wait_for(anext(stream), 10)
    assert isinstance(told, ServerSentEventMessage)
    assert told.event == "overflow"
    assert told.id == "orders.Order=1", "the id carries only what the client was told, to resume from"
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(stream), 10)
    await _until_subscribers(channel, 0)


async def test_a_stream_that_keeps_up_is_not_closed(channels: ChannelsPlugin) -> None:
    account = uuid.uuid4()
    channel = channel_for(account)
    stream = _streams(channels, asyncio.Event()).events(Route(account, "main"), None)
    first = asyncio.ensure_future(anext(stream))
    await _until_subscribers(channel, 1)
    for p in range(1, 21):  # each read before the next is sent: never more than one waiting
        await _publish(channel, range(p, p + 1))
        event = first if p == 1 else asyncio.ensure_future(anext(stream))
        assert (await asyncio.wait_for(event, 10)).id == f"orders.Order={p}"
    await stream.aclose()
    await _until_subscribers(channel, 0)


async def test_draining_ends_an_idle_stream_at_once(channels: ChannelsPlugin) -> None:
    account = uuid.uuid4()
    draining = asyncio.Event()
    stream = _streams(channels, draining).events(Route(account, "main"), None)
    waiting = asyncio.ensure_future(anext(stream))
    await _until_subscribers(channel_for(account), 1)
    draining.set()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 1)
    await _until_subscribers(channel_for(account), 0)
