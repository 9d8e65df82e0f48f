"""Notifications on a real three-node Redis Cluster: sharded pub/sub from the Notifier to the channels
backend, the consistency waiter over it, and the plain pub/sub it falls back to."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from litestar.channels import ChannelsPlugin
from redis.exceptions import ConnectionError as RedisConnectionError

from core import redis_pubsub
from core.redis_client import redis_client
from core.redis_pubsub import ClusterChannelsBackend, has_sharded_pubsub
from queries import waiter
from queries.notifications import Notifier, ProjectionAdvanced, channel_for
from queries.shown import Scope
from queries.waiter import ConsistencyWaiter
from tenancy.rate_limit import AccountRateLimiter, CommandLimit
from tests.conftest import make_account
from tests.redis_cluster import ClusterNodes

ORDERS = Scope({"Order": "orders"}, ("orders",))
PER_NODE = 4


@contextlib.asynccontextmanager
async def cluster_channels(nodes: ClusterNodes) -> AsyncIterator[ChannelsPlugin]:
    """The channels plugin with the backend the API uses in cluster mode, started."""
    plugin = ChannelsPlugin(
        backend=ClusterChannelsBackend(redis_client(nodes.url, cluster=True)), arbitrary_channels_allowed=True
    )
    async with plugin:
        yield plugin


@contextlib.asynccontextmanager
async def listening(
    channels: ChannelsPlugin, accounts: list[UUID]
) -> AsyncIterator[dict[UUID, list[dict[str, Any]]]]:
    """A subscriber per account, each collecting what its stream delivers."""
    received: dict[UUID, list[dict[str, Any]]] = {account: [] for account in accounts}
    subscribers = {account: await channels.subscribe(channel_for(account)) for account in accounts}

    async def collect(account: UUID) -> None:
        async for event in subscribers[account].iter_events():
            received[account].append(json.loads(event))

    readers = [asyncio.create_task(collect(account)) for account in accounts]
    try:
        yield received
    finally:
        for reader in readers:
            reader.cancel()
        for subscriber in subscribers.values():
            await channels.unsubscribe(subscriber)


async def accounts_on_every_node(nodes: ClusterNodes) -> dict[UUID, int]:
    """PER_NODE accounts whose channels hash to slots of each node: account -> the owner's port."""
    chosen: dict[UUID, int] = {}
    while len(chosen) < PER_NODE * len(nodes.ports):
        batch = [uuid.uuid4() for _ in range(20)]
        for account, port in zip(batch, await nodes.owners(channel_for(a) for a in batch), strict=True):
            if list(chosen.values()).count(port) < PER_NODE:
                chosen[account] = port
    return chosen


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.02)


def advanced(account: UUID, position: int) -> ProjectionAdvanced:
    return ProjectionAdvanced("orders", account, "Order", position)


def note(position: int) -> dict[str, Any]:
    return {"Projection": "orders", "StreamType": "Order", "Position": position}


def test_sharded_pubsub_is_redis_7_and_later() -> None:
    versions = ("6.2.14", "6.0", "7.0.15", "7.2.4", "8.0.0", "7")
    assert [has_sharded_pubsub(v) for v in versions] == [False, False, True, True, True, True]


async def test_each_account_hears_its_notifications_from_the_shard_owning_its_channel(
    cluster_nodes: ClusterNodes,
) -> None:
    accounts = await accounts_on_every_node(cluster_nodes)
    assert set(accounts.values()) == set(cluster_nodes.ports)
    positions = {account: 100 + i for i, account in enumerate(accounts)}
    notifier = redis_client(cluster_nodes.url, cluster=True)
    # A plain subscriber on every node would hear a PUBLISH (it reaches the whole cluster), not an SPUBLISH.
    plain_clients = [cluster_nodes.node(port) for port in cluster_nodes.ports]
    plain = [client.pubsub() for client in plain_clients]
    try:
        for listener in plain:
            await listener.subscribe(*(channel_for(a) for a in accounts))
        async with cluster_channels(cluster_nodes) as channels:
            async with listening(channels, list(accounts)) as received:
                for account, owner in accounts.items():
                    only_owner = {port: int(port == owner) for port in cluster_nodes.ports}
                    await cluster_nodes.until_subscribers("SHARDNUMSUB", channel_for(account), only_owner)
                await Notifier(notifier).publish(advanced(a, p) for a, p in positions.items())

                async def all_arrived() -> bool:
                    return all(received.values())

                await eventually(all_arrived, "every account's notification")
                await asyncio.sleep(0.5)  # time for a stray message to reach a wrong subscriber
                assert received == {account: [note(positions[account])] for account in accounts}
            for account in accounts:
                none = dict.fromkeys(cluster_nodes.ports, 0)
                await cluster_nodes.until_subscribers("SHARDNUMSUB", channel_for(account), none)
        for listener in plain:
            while (message := await listener.get_message(timeout=0.1)) is not None:
                assert message["type"] == "subscribe", message
    finally:
        for listener, client in zip(plain, plain_clients, strict=True):
            await listener.aclose()
            await client.aclose()
        await notifier.aclose()


async def test_a_consistency_wait_ends_on_a_notification_over_the_cluster(
    cluster_nodes: ClusterNodes, pool: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notification ends the wait (the waiter's own look at the checkpoints would come only after
    20 s here), once this database's checkpoint confirms it: a notification alone is not enough, since
    while an account moves another database's projector may speak for it."""
    monkeypatch.setattr(waiter, "RECHECK_INTERVAL", 30.0)
    account = await make_account(pool)
    (owner,) = await cluster_nodes.owners([channel_for(account)])
    notifier = redis_client(cluster_nodes.url, cluster=True)
    try:
        async with cluster_channels(cluster_nodes) as channels:
            wait = asyncio.create_task(
                ConsistencyWaiter(channels).wait(pool, account, ORDERS, {"Order": 7}, within=20)
            )
            only_owner = {port: int(port == owner) for port in cluster_nodes.ports}
            await cluster_nodes.until_subscribers("SHARDNUMSUB", channel_for(account), only_owner)
            await Notifier(notifier).publish([advanced(account, 7)])  # not in this database yet
            await asyncio.sleep(1.0)
            assert not wait.done()
            await pool.execute(
                "INSERT INTO projection_checkpoints (projection, account_id, stream_type, position) "
                "VALUES ('orders', $1, 'Order', 7)",
                account,
            )
            published = time.monotonic()
            await Notifier(notifier).publish([advanced(account, 7)])
            assert await wait is True
            assert time.monotonic() - published < 10  # far sooner than the waiter's own look
    finally:
        await notifier.aclose()


async def test_without_sharded_pubsub_plain_publish_and_subscribe_are_used(
    cluster_nodes: ClusterNodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on a cluster of Redis 6.2: these servers are 7.0, so they are said to be older."""

    async def older(cluster: Any) -> bool:
        return False

    monkeypatch.setattr(redis_pubsub, "sharded_pubsub", older)
    accounts = list(await accounts_on_every_node(cluster_nodes))
    notifier = redis_client(cluster_nodes.url, cluster=True)
    try:
        async with cluster_channels(cluster_nodes) as channels, listening(channels, accounts) as received:
            none = dict.fromkeys(cluster_nodes.ports, 0)
            for account in accounts:

                async def on_one_node(account: UUID = account) -> bool:
                    counts = await cluster_nodes.subscribers("NUMSUB", channel_for(account))
                    return sorted(counts.values()) == [0, 0, 1]

                await eventually(on_one_node, f"one plain subscriber of {account}")
                assert await cluster_nodes.subscribers("SHARDNUMSUB", channel_for(account)) == none
            await Notifier(notifier).publish(advanced(a, 5) for a in accounts)

            async def all_arrived() -> bool:
                return all(received.values())

            await eventually(all_arrived, "every account's notification")
            await asyncio.sleep(0.3)
            assert received == {account: [note(5)] for account in accounts}
    finally:
        await notifier.aclose()


async def test_what_the_channels_plugin_publishes_reaches_its_subscriber(cluster_nodes: ClusterNodes) -> None:
    account = uuid.uuid4()
    (owner,) = await cluster_nodes.owners([channel_for(account)])
    async with cluster_channels(cluster_nodes) as channels, listening(channels, [account]) as received:
        only_owner = {port: int(port == owner) for port in cluster_nodes.ports}
        await cluster_nodes.until_subscribers("SHARDNUMSUB", channel_for(account), only_owner)
        await channels.wait_published(json.dumps(note(9)).encode(), channel_for(account))

        async def arrived() -> bool:
            return bool(received[account])

        await eventually(arrived, "the published message")
        assert received[account] == [note(9)]


async def test_notifications_are_kept_while_the_cluster_is_unreachable() -> None:
    """The latest position per (projection, account, stream type), to publish once Redis answers."""
    unreachable = redis_client("redis://127.0.0.1:1/0", cluster=True, socket_connect_timeout=0.2)
    notifier = Notifier(unreachable)
    account = uuid.uuid4()
    await notifier.publish([advanced(account, 3)])
    await notifier.publish([advanced(account, 5), advanced(account, 4)])
    assert notifier._pending == {("orders", account, "Order"): 5}
    await unreachable.aclose()


async def test_subscribing_on_an_unreachable_cluster_is_a_connection_error() -> None:
    """What the consistency waiter and GET /notifications take for Redis being down, as on one server."""
    unreachable = redis_client("redis://127.0.0.1:1/0", cluster=True, socket_connect_timeout=0.2)
    backend = ClusterChannelsBackend(unreachable)
    with pytest.raises(RedisConnectionError):
        await backend.subscribe([channel_for(uuid.uuid4())])
    await backend.on_shutdown()


async def test_command_rate_limits_hold_on_the_cluster_across_replicas(cluster_nodes: ClusterNodes) -> None:
    """Each account's counters live on the node owning their slot; two limiters (two API replicas)
    share one budget there through their looks, and accounts on every node are limited alike."""
    limit = CommandLimit(rate=5, burst=10)
    prefix = f"erp-test-rate-{uuid.uuid4().hex[:8]}"
    replicas = [
        AccountRateLimiter(cluster_nodes.url, limit, key_prefix=prefix, cluster=True) for _ in range(2)
    ]
    try:
        start = (time.time() // limit.window + 1) * limit.window  # a window's start: none slides out
        for account in [uuid.uuid4() for _ in range(6)]:
            answers = []
            for n in range(12):
                hitting, other = replicas[n % 2], replicas[1 - n % 2]
                answers.append(hitting.hit(account, now=start))
                await hitting.sync(now=start)  # it adds its command to the account's count,
                await other.sync(now=start)  # and the other replica reads that count back
            assert answers[:10] == [None] * 10, answers
            assert None not in answers[10:], answers
        nodes_holding = 0
        for port in cluster_nodes.ports:
            node = cluster_nodes.node(port)
            keys = [key async for key in node.scan_iter(match=f"{prefix}*")]
            nodes_holding += bool(keys)
            await node.aclose()
        assert nodes_holding >= 2  # the accounts' counters are spread over the shards
    finally:
        for replica in replicas:
            await replica.close()
