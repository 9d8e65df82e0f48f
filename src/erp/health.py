"""GET /health: 200 when Postgres, Redis and Temporal answer, else 503 naming what is down."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import msgspec
from litestar import Response, get
from litestar.di import NamedDependency

from erp.bootstrap import Services

CHECK_TIMEOUT = 2.0


class Health(msgspec.Struct, rename="pascal"):
    status: str
    checks: dict[str, str]


async def _check(probe: Awaitable[Any]) -> str:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT)
    except Exception as error:
        return f"down: {type(error).__name__}: {error}"[:300]
    return "up"


async def _temporal(services: Services) -> None:
    client = await services.temporal.client()
    await client.service_client.check_health(timeout=timedelta(seconds=2))


@get("/health", tags=["health"], summary="Health of the API's dependencies")
async def health(services: NamedDependency[Services]) -> Response[Health]:
    postgres, redis, temporal = await asyncio.gather(
        _check(asyncio.gather(*(pool.fetchval("SELECT 1") for _, pool in services.databases))),
        _check(services.redis.ping()),
        _check(_temporal(services)),
    )
    checks = {"Postgres": postgres, "Redis": redis, "Temporal": temporal}
    down = [name for name, state in checks.items() if state != "up"]
    if down:
        body = Health(f"down: {', '.join(down)}", checks)
        return Response(body, status_code=503, headers={"Retry-After": "5"})
    return Response(Health("ok", checks))
