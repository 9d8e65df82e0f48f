"""Stream tickets on the machine's Redis and on a real three-node Redis Cluster: good once, for
their account, gone after their time, and kept as a hash only."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import pytest

from core.redis_client import RedisClient, redis_client
from tenancy.routing import Route
from tenancy.tickets import KEY_PREFIX, StreamTickets
from tests.redis_cluster import ClusterNodes


async def _used_once_then_expired(client: RedisClient) -> None:
    tickets = StreamTickets(client, ttl=1)
    route = Route(uuid.uuid4(), "main")
    issued = await tickets.issue(route)
    other = await tickets.issue(Route(uuid.uuid4(), "big"))
    assert issued.ticket != other.ticket
    key = KEY_PREFIX + hashlib.sha256(issued.ticket.encode()).hexdigest()
    assert await client.exists(key) == 1
    stored = await client.get(key)
    assert stored is not None and issued.ticket.encode() not in stored
    assert 0 < await client.ttl(key) <= 1

    assert await tickets.redeem(issued.ticket) == route
    assert await tickets.redeem(issued.ticket) is None, "a ticket opens one stream"
    assert await tickets.redeem("x" * 100) is None
    await asyncio.sleep(1.2)
    assert await tickets.redeem(other.ticket) is None, "an expired ticket opens nothing"


async def test_a_ticket_is_good_once_and_expires() -> None:
    client = redis_client("redis://127.0.0.1:6379/0")
    try:
        await _used_once_then_expired(client)
    finally:
        await client.aclose()


async def test_tickets_work_on_a_redis_cluster(cluster_nodes: ClusterNodes) -> None:
    client = redis_client(cluster_nodes.url, cluster=True)
    try:
        await _used_once_then_expired(client)
    finally:
        await client.aclose()


def test_a_ticket_lives_at_least_a_second() -> None:
    with pytest.raises(ValueError, match="ERP_SSE_TICKET_TTL"):
        StreamTickets(redis_client("redis://127.0.0.1:6379/0"), ttl=0)
