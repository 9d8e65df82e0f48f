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


async def onboard(
    session: aiohttp.ClientSession, base: str, count: int, first: int = 0
) -> tuple[list[tuple[UUID, str]], float]:
    """Open `count` accounts in one bulk import (POST /accounts/import, one workflow), named from
    `first` on: their AccountIds and API keys, and the seconds until all were Active."""
    names = "".join(f"Bench {i}\n" for i in range(first, first + count)).encode()
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    started = time.perf_counter()
    async with session.post(f"{base}/accounts/import", data=names, headers=operator) as response:
        body = await response.json()
        if response.status != 201:
            raise RuntimeError(f"onboarding failed: {response.status} {body}")
    while body["Status"] != "Active":  # the workflow goes on after the answer: follow the import
        await asyncio.sleep(0.1)
        async with session.get(f"{base}/accounts/imports/{body['ImportId']}", headers=operator) as state:
            body = {**body, "Status": (await state.json())["Status"]}
    elapsed = time.perf_counter() - started
    return [(UUID(a["AccountId"]), a["ApiKey"]) for a in body["Accounts"]], elapsed


async def open_accounts(session: aiohttp.ClientSession, base: str, count: int) -> list[float]:
    """Open `count` accounts one at a time (POST /accounts): each one's seconds until answered."""
    took = []
    for i in range(count):
        started = time.perf_counter()
        async with session.post(
            f"{base}/accounts", json={"Name": f"Single {i}"}, headers={"Authorization": f"Bearer {OPERATOR}"}
        ) as response:
            body = await response.json()
            if response.status != 201 or body["Status"] != "Active":
                raise RuntimeError(f"onboarding failed: {response.status} {body}")
        took.append(time.perf_counter() - started)
    return took


async def run_for(seconds: float, workers: int, step: Callable[[int], Awaitable[None]]) -> float:
    """Run `step` in `workers` concurrent loops for `seconds`; returns the elapsed time."""
    deadline = time.monotonic() + seconds
    started = time.monotonic()

    async def loop(n: int) -> None:
        while time.monotonic() < deadline:
            await step(n)

    await asyncio.gather(*(loop(n) for n in range(workers)))
    return time.monotonic() - started
