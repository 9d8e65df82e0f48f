"""GET /health: 200 when Postgres, Redis and Temporal answer, else 503 naming what is down; and
GET /health/live: 200 while the process serves, asking nothing else (a liveness probe's).

The deep check's answer is kept `CACHE_SECONDS`, and concurrent calls share one round of checks: an
unauthenticated caller polling it cannot make the API ask every dependency on every request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import msgspec
from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from redis.asyncio.cluster import RedisCluster

from core.redis_client import RedisClient
from core.temporal import TemporalGateway
from tenancy.routing import Databases

CHECK_TIMEOUT = 2.0
CACHE_SECONDS = 1.5


class Health(msgspec.Struct, rename="pascal"):
    status: str
    checks: dict[str, str]


async def _check(probe: Awaitable[Any]) -> str:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT)
    except Exception as error:
        return f"down: {type(error).__name__}: {error}"[:300]
    return "up"


class HealthChecks:
    """Asks each dependency whether it answers."""

    def __init__(self, databases: Databases, redis_client: RedisClient, temporal: TemporalGateway) -> None:
        self._databases = databases
        self._redis = redis_client
        self._temporal = temporal
        self._answer: tuple[float, dict[str, str]] | None = None
        self._round: asyncio.Task[dict[str, str]] | None = None
        self.rounds = 0
        """Rounds of checks run (each asks every dependency once)."""

    async def _redis_answers(self) -> None:
        """The server answers, or on a cluster every primary: each owns the channels of its slots."""
        if isinstance(self._redis, RedisCluster):
            await self._redis.ping(target_nodes=RedisCluster.PRIMARIES)
        else:
            await self._redis.ping()

    async def _temporal_answers(self) -> None:
        client = await self._temporal.client()
        await client.service_client.check_health(timeout=timedelta(seconds=2))

    async def run(self) -> dict[str, str]:
        """Each dependency's state, as a round of checks at most `CACHE_SECONDS` old found it."""
        if self._answer is not None and time.monotonic() - self._answer[0] < CACHE_SECONDS:
            return self._answer[1]
        if self._round is None or self._round.done():
            self._round = asyncio.ensure_future(self._check_all())
        checks = await asyncio.shield(self._round)
        return checks

    async def _check_all(self) -> dict[str, str]:
        self.rounds += 1
        postgres, redis_state, temporal = await asyncio.gather(
            _check(asyncio.gather(*(pool.fetchval("SELECT 1") for _, pool in self._databases))),
            _check(self._redis_answers()),
            _check(self._temporal_answers()),
        )
        checks = {"Postgres": postgres, "Redis": redis_state, "Temporal": temporal}
        self._answer = (time.monotonic(), checks)
        return checks


@get(
    "/health",
    tags=["health"],
    summary="Health of the API's dependencies",
    operation_id="health",
    responses={503: ResponseSpec(Health, description="A dependency is down", generate_examples=False)},
)
async def health(health_checks: NamedDependency[HealthChecks]) -> Response[Health]:
    checks = await health_checks.run()
    down = [name for name, state in checks.items() if state != "up"]
    if down:
        body = Health(f"down: {', '.join(down)}", checks)
        return Response(body, status_code=503, headers={"Retry-After": "5"})
    return Response(Health("ok", checks))


@get(
    "/health/live",
    tags=["health"],
    summary="Whether the API process serves (no dependency is asked)",
    operation_id="live",
)
async def live() -> Health:
    return Health("ok", {})
