"""Pub/sub on one Redis server or on a Redis Cluster: publishing in batches, and the channels backend
that Litestar's `ChannelsPlugin` subscribes through on a cluster.

On a cluster whose primaries all have sharded pub/sub (Redis 7.0 and later), a message is SPUBLISHed
to the shard that owns its channel's slot and only that shard's subscribers (SSUBSCRIBE) hear it;
plain PUBLISH goes to every node of the cluster. Without sharded pub/sub, plain PUBLISH and SUBSCRIBE
are used: a subscriber on any node hears a message published on any other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import redis.asyncio as redis
from litestar.channels.backends.base import ChannelsBackend
from redis.asyncio.cluster import ClusterPubSub, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException

from core.redis_client import REDIS_UNAVAILABLE, RedisClient

log = logging.getLogger(__name__)

SHARDED_SINCE = (7, 0)
"""The first Redis version with SPUBLISH, SSUBSCRIBE and SUNSUBSCRIBE."""
READ_TIMEOUT = 1.0
"""How long a reader waits on its connection before looking again whether it still has channels."""
RETRY_DELAY = 1.0
"""How long a reader whose node did not answer waits before reading again (redis-py reconnects and
subscribes again on that read)."""


def has_sharded_pubsub(version: str) -> bool:
    """Whether a server of this version (INFO's `redis_version`, e.g. "7.0.15") has sharded pub/sub."""
    major, minor = (int(part) for part in f"{version}.0".split(".")[:2])
    return (major, minor) >= SHARDED_SINCE


async def sharded_pubsub(cluster: RedisCluster) -> bool:
    """Whether every primary of the cluster has sharded pub/sub (connects the client if need be)."""
    await cluster.initialize()
    for node in cluster.get_primaries():
        info = await cluster.info("server", target_nodes=node)
        if not has_sharded_pubsub(str(info["redis_version"])):
            return False
    return True


class Publisher:
    """Publishes batches of (channel, message), pipelined.

    On one server, one pipeline of PUBLISH. On a cluster, SPUBLISH where every primary has it (found
    out once, on the first batch), else PUBLISH, through redis-py's cluster pipeline: it groups the
    batch by the node owning each channel's slot and sends each node its part at once.
    """

    def __init__(self, client: RedisClient) -> None:
        self._client = client
        self._cluster_command: str | None = None

    async def publish(self, messages: Iterable[tuple[str, bytes]]) -> None:
        if isinstance(self._client, redis.Redis):
            async with self._client.pipeline(transaction=False) as pipe:
                for channel, data in messages:
                    pipe.publish(channel, data)
                await pipe.execute()
            return
        if self._cluster_command is None:
            self._cluster_command = "SPUBLISH" if await sharded_pubsub(self._client) else "PUBLISH"
        async with self._client.pipeline() as cluster_pipe:
            for channel, data in messages:
                # Not `cluster_pipe.publish`: redis-py refuses it by name in a cluster pipeline, yet
                # PUBLISH on any node reaches the whole cluster, so the slot's owner does as well.
                cluster_pipe.execute_command(self._cluster_command, channel, data)
            await cluster_pipe.execute()


class ClusterChannelsBackend(ChannelsBackend):
    """Litestar channels on a Redis Cluster (it owns `cluster` and closes it on shutdown).

    With sharded pub/sub each channel is SSUBSCRIBEd on the shard that owns its slot: redis-py's
    `ClusterPubSub` keeps one connection per shard, and a reader per shard waits on it, so a message
    is passed on as soon as it arrives, whichever shard it comes from. Without, the channels are
    SUBSCRIBEd on one node and one reader waits there. Nothing connects before the first
    subscription (the API starts while Redis is down), and a cluster that cannot be reached raises
    redis' `ConnectionError`, as a single server would.
    """

    def __init__(self, cluster: RedisCluster) -> None:
        self._cluster = cluster
        self._publisher = Publisher(cluster)
        self._pubsub: ClusterPubSub | None = None
        self._sharded = False
        self._readers: dict[str, asyncio.Task[None]] = {}
        """By shard (node name); without sharded pub/sub, the one reader under ""."""
        self._messages: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    async def on_startup(self) -> None:
        """Nothing to do: the first subscription connects."""

    async def on_shutdown(self) -> None:
        for reader in self._readers.values():
            reader.cancel()
        await asyncio.gather(*self._readers.values(), return_exceptions=True)
        self._readers.clear()
        if self._pubsub is not None:
            await self._pubsub.aclose()
        await self._cluster.aclose()

    async def publish(self, data: bytes, channels: Iterable[str]) -> None:
        with _reachable():
            await self._publisher.publish((channel, data) for channel in channels)

    async def subscribe(self, channels: Iterable[str]) -> None:
        with _reachable():
            if self._pubsub is None:
                await self._cluster.initialize()  # `ClusterPubSub` routes by the client's slot map
                self._sharded = await sharded_pubsub(self._cluster)
                self._pubsub = self._cluster.pubsub()
            if self._sharded:
                await self._pubsub.ssubscribe(*channels)
            else:
                await self._pubsub.subscribe(*channels)
        self._start_readers(self._pubsub)

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        if self._pubsub is None:
            return
        with _reachable():
            if self._sharded:
                await self._pubsub.sunsubscribe(*channels)
            else:
                await self._pubsub.unsubscribe(*channels)

    async def stream_events(self) -> AsyncGenerator[tuple[str, bytes], None]:
        while True:
            yield await self._messages.get()

    async def get_history(self, channel: str, limit: int | None = None) -> list[bytes]:
        """Pub/sub keeps no history."""
        raise NotImplementedError

    def _start_readers(self, pubsub: ClusterPubSub) -> None:
        """A reader for each connection that carries subscriptions and has none running."""
        if self._sharded:
            for name in pubsub.node_pubsub_mapping:
                self._start(name, partial(self._read_shard, pubsub, name))
        else:
            self._start("", partial(self._read_node, pubsub))

    def _start(self, name: str, reader: Callable[[], Coroutine[Any, Any, None]]) -> None:
        running = self._readers.get(name)
        if running is None or running.done():
            self._readers[name] = asyncio.create_task(reader())

    async def _read_shard(self, pubsub: ClusterPubSub, name: str) -> None:
        """While the shard holds channels of ours: `ClusterPubSub` closes its connection, and drops it
        from `node_pubsub_mapping`, once its last channel there is unsubscribed."""
        node = self._cluster.get_node(node_name=name)
        while node is not None and name in pubsub.node_pubsub_mapping:
            await self._pass_on(pubsub.get_sharded_message(True, READ_TIMEOUT, target_node=node), name)

    async def _read_node(self, pubsub: ClusterPubSub) -> None:
        while True:
            await self._pass_on(pubsub.get_message(True, READ_TIMEOUT), "cluster")

    async def _pass_on(self, receive: Awaitable[dict[str, Any] | None], source: str) -> None:
        try:
            message = await receive
        except REDIS_UNAVAILABLE as error:
            log.warning("no notifications from Redis %s for now: %r", source, error)
            await asyncio.sleep(RETRY_DELAY)
            return
        if message is not None and message["type"] in ("message", "smessage"):
            self._messages.put_nowait((message["channel"].decode(), message["data"]))


@contextmanager
def _reachable() -> Iterator[None]:
    """A cluster none of whose nodes answers raises `RedisClusterException`, not a `RedisError`:
    raise what a single server would, so callers handle both alike."""
    try:
        yield
    except RedisClusterException as error:
        raise RedisConnectionError(f"the Redis Cluster cannot be reached: {error}") from error
