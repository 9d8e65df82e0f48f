"""Per-account command rate limits, kept in Redis so that every API replica draws on one budget.

The strategy is the `limits` library's sliding window counter, with `burst` commands per window of
`burst / rate` seconds: a burst of up to `burst` at once, and `rate` commands per second over time.
It keeps two counters per account in Redis (this window's and the last one's; the last one's weighs
in for the part of it a sliding window would still cover), checked and advanced by one Lua script:
constant memory per account and one round trip per command let through (a refused one pays a second,
for its Retry-After). The alternatives fall short: a fixed window lets up to twice the burst through
around a window's edge, and a moving window keeps a timestamp per command (`burst` entries per
account). Unlike a token bucket, a drained account gets nothing back until its window has turned,
then `rate` per second. `limits` counts windows in whole seconds, so the burst must be a whole
multiple of the rate.

Redis unreachable: commands go through (fail open). After a failure the limiter does not ask Redis
for a second, so a Redis that hangs costs one timeout a second rather than one per command, and it
warns at most every ten seconds.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from urllib.parse import urlsplit
from uuid import UUID

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisClusterStorage, RedisStorage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from litestar.plugins.problem_details import ProblemDetailsException
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from core.metrics import COMMANDS_LIMITED
from core.problems import problem
from core.redis_client import REDIS_UNAVAILABLE, RedisClient, redis_client
from core.settings import Settings

log = logging.getLogger(__name__)

PAUSE_AFTER_FAILURE = 1.0
"""Seconds during which a limiter whose Redis failed lets commands through without asking it."""
WARN_EVERY = 10.0
"""Seconds between two warnings that Redis is unreachable."""
REDIS_TIMEOUT = 0.5
"""Seconds a limit check waits for Redis (to connect, or to answer) before letting the command go."""


@dataclass(frozen=True, slots=True)
class CommandLimit:
    """At most `burst` commands at once per account, and `rate` per second over time."""

    rate: int
    burst: int

    def __post_init__(self) -> None:
        if self.rate < 1 or self.burst < 1:
            raise ValueError(
                f"ERP_COMMAND_RATE ({self.rate}) and ERP_COMMAND_BURST ({self.burst}) must be at least 1 "
                "(ERP_COMMAND_RATE=0 turns the limit off)"
            )
        if self.burst < self.rate:
            raise ValueError(
                f"ERP_COMMAND_BURST ({self.burst}) must be at least ERP_COMMAND_RATE ({self.rate}): "
                "a burst smaller than one second's commands makes no sense"
            )
        if self.burst % self.rate:
            below = self.burst - self.burst % self.rate
            raise ValueError(
                f"ERP_COMMAND_BURST ({self.burst}) must be a whole multiple of ERP_COMMAND_RATE "
                f"({self.rate}), {below} or {below + self.rate} for example: the limit is a burst per "
                "window of burst/rate seconds, and windows are whole seconds"
            )

    @property
    def window(self) -> int:
        """Seconds in which an account may send `burst` commands."""
        return self.burst // self.rate

    def __str__(self) -> str:
        return f"{self.rate} commands per second (burst {self.burst})"


def command_limit(settings: Settings) -> CommandLimit | None:
    """The configured limit (ERP_COMMAND_RATE, ERP_COMMAND_BURST), or None when the rate is 0.

    Raises ValueError for one that makes no sense, so that the API refuses to start with it.
    """
    if settings.command_rate == 0:
        return None
    return CommandLimit(settings.command_rate, settings.command_burst)


class AccountRateLimiter:
    """Each account's command budget, in Redis at `redis_url` under keys starting with `key_prefix`."""

    def __init__(
        self, redis_url: str, limit: CommandLimit, *, key_prefix: str = "erp.rate", cluster: bool = False
    ) -> None:
        self.limit = limit
        self._item = RateLimitItemPerSecond(limit.burst, limit.window, namespace="commands")
        storage: RedisStorage
        if cluster:
            # An account's two counters share a hash slot (`limits` tags its keys), so the check
            # stays one call to the node that owns them.
            storage = RedisClusterStorage(
                f"async+redis+cluster://{urlsplit(redis_url).netloc}",
                implementation="redispy",
                key_prefix=key_prefix,
                socket_timeout=REDIS_TIMEOUT,
                socket_connect_timeout=REDIS_TIMEOUT,
            )
            bridge = storage.bridge
            assert isinstance(bridge, RedispyBridge)
            client = bridge.get_connection()  # the cluster client `limits` made
            assert isinstance(client, RedisCluster)
            self._redis: RedisClient = client
        else:
            # No retries and short timeouts: a check that cannot reach Redis at once lets it go.
            self._redis = redis_client(
                redis_url,
                socket_timeout=REDIS_TIMEOUT,
                socket_connect_timeout=REDIS_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
            storage = RedisStorage(
                f"async+{redis_url}",
                implementation="redispy",
                key_prefix=key_prefix,
                # `limits` types its options as scalars, yet hands them to redis-py's client as is.
                connection_pool=self._redis.connection_pool,  # type: ignore[arg-type]
            )
        self._strategy = SlidingWindowCounterRateLimiter(storage)
        self._paused_until = 0.0
        self._warned_at = -math.inf

    async def hit(self, account_id: UUID) -> int | None:
        """Count one command against the account: None if it may go ahead, else the whole seconds
        (at least 1) until the account may send another."""
        now = time.monotonic()
        if now < self._paused_until:
            return None
        key = str(account_id)
        try:
            if await self._strategy.hit(self._item, key):
                return None
            stats = await self._strategy.get_window_stats(self._item, key)
        except REDIS_UNAVAILABLE as error:
            self._paused_until = now + PAUSE_AFTER_FAILURE
            if now - self._warned_at >= WARN_EVERY:
                self._warned_at = now
                log.warning("command rate limits are off while Redis is unreachable: %s", error)
            return None
        COMMANDS_LIMITED.add(1)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def refusal(self, account_id: UUID, retry_after: int) -> ProblemDetailsException:
        """The 429 for a command over the account's limit."""
        return problem(
            429,
            f"account {account_id} is over its limit of {self.limit}; retry after {retry_after} s",
            {"Retry-After": str(retry_after)},
        )

    async def close(self) -> None:
        await self._redis.aclose()
