"""Redis clients, configured alike for the API, the worker and the channels plugin: one server, or
a Redis Cluster reached through one of its nodes."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias, overload

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError
from redis.maint_notifications import MaintNotificationsConfig

RedisClient: TypeAlias = redis.Redis | RedisCluster

REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)
"""What a client raises when Redis cannot take a command. A cluster none of whose nodes answers is a
`RedisClusterException`, which is not a `RedisError`."""


@overload
def redis_client(url: str, *, cluster: Literal[False] = False, **options: Any) -> redis.Redis: ...
@overload
def redis_client(url: str, *, cluster: Literal[True], **options: Any) -> RedisCluster: ...
@overload
def redis_client(url: str, *, cluster: bool, **options: Any) -> RedisClient: ...
def redis_client(url: str, *, cluster: bool = False, **options: Any) -> RedisClient:
    """A client for `url` (with `cluster`, a cluster that `url` names one node of), without
    redis-py's maintenance-notification handshake.

    That handshake (CLIENT MAINT_NOTIFICATIONS) is unknown to Redis 7.0; on a reconnect after a
    Redis restart, redis-py 8.1 surfaced the refusal as an error (the fault suite caught it). Its
    cluster client would make it only over RESP3; it is turned off there too, whatever the URL asks.
    """
    config = MaintNotificationsConfig(enabled=False)
    if cluster:
        return RedisCluster.from_url(url, maint_notifications_config=config, **options)
    return redis.from_url(url, maint_notifications_config=config, **options)
