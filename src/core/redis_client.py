"""Redis clients, configured alike for the API, the worker and the channels plugin."""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis
from redis.maint_notifications import MaintNotificationsConfig


def redis_client(url: str, **options: Any) -> redis.Redis:
    """A client for `url`, without redis-py's maintenance-notification handshake.

    That handshake (CLIENT MAINT_NOTIFICATIONS) is unknown to Redis 7.0; on a reconnect after a
    Redis restart, redis-py 8.1 surfaced the refusal as an error (the fault suite caught it).
    """
    return redis.from_url(url, maint_notifications_config=MaintNotificationsConfig(enabled=False), **options)
