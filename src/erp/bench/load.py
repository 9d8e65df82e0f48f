"""The load the bench sends: its orders, its accounts, and concurrent loops of requests."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import aiohttp

from erp.bench.stack import OPERATOR

BULK = 10
"""Orders per append in the bulk phase."""
PAGE = 20
"""Items per query page in the soak, as a screen would show them."""
CUSTOMERS = ["Linus Torvalds", "Ada Lovelace", "Grace Hopper"]


def order_body() -> dict[str, Any]:
    return {
        "OrderId": str(uuid.uuid4()),
        "CustomerName": random.choice(CUSTOMERS),
        "OrderLines": [{"ProductCode": "KB-1", "Quantity": 2, "UnitPrice": "10.00"}],
    }


async def onboard(session: aiohttp.ClientSession, base: str, count: int) -> list[tuple[UUID, str]]:
    """Open `count` accounts over HTTP (8 at a time): their AccountIds and API keys."""
    limit = asyncio.Semaphore(8)

    async def one(i: int) -> tuple[UUID, str]:
        async with (
            limit,
            session.post(
                f"{base}/accounts",
                json={"Name": f"Bench {i}"},
                headers={"Authorization": f"Bearer {OPERATOR}"},
            ) as response,
        ):
            body = await response.json()
            if response.status != 201:
                raise RuntimeError(f"onboarding failed: {response.status} {body}")
            return UUID(body["AccountId"]), body["ApiKey"]

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def run_for(seconds: float, workers: int, step: Callable[[int], Awaitable[None]]) -> float:
    """Run `step` in `workers` concurrent loops for `seconds`; returns the elapsed time."""
    deadline = time.monotonic() + seconds
    started = time.monotonic()

    async def loop(n: int) -> None:
        while time.monotonic() < deadline:
            await step(n)

    await asyncio.gather(*(loop(n) for n in range(workers)))
    return time.monotonic() - started
