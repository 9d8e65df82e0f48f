"""Projector wake-ups against the real Postgres: prompt when alone, coalesced under load, never lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from commands.store.wakeup import EVENTS_CHANNEL, ProjectorWakeup, concerns
from core.settings import Settings

pytestmark = pytest.mark.timeout(30)


class Listener:
    def __init__(self) -> None:
        self.times: list[float] = []
        self.payloads: list[str] = []
        self.arrived = asyncio.Event()

    def __call__(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self.times.append(time.monotonic())
        self.payloads.append(payload)
        self.arrived.set()

    async def next(self) -> float:
        self.arrived.clear()
        async with asyncio.timeout(5):
            await self.arrived.wait()
        return self.times[-1]


@pytest.fixture
async def listener(settings: Settings) -> AsyncIterator[Listener]:
    listener = Listener()
    connection = await asyncpg.connect(settings.database_url)
    await connection.add_listener(EVENTS_CHANNEL, listener)
    yield listener
    await connection.close()


async def test_pokes_are_coalesced_under_load_and_the_last_one_is_announced(
    listener: Listener, pool: asyncpg.Pool[Any]
) -> None:
    wakeup = ProjectorWakeup(pool, min_interval=0.05)
    try:
        wakeup.poke()  # a lone append after a quiet spell is announced at once
        await listener.next()

        await asyncio.sleep(0.1)
        listener.times.clear()
        started = time.monotonic()
        while time.monotonic() - started < 0.2:  # a burst: appends all the time for 200 ms
            wakeup.poke()
            await asyncio.sleep(0)
        last_poke = time.monotonic()
        while not listener.times or listener.times[-1] < last_poke:
            await listener.next()  # the burst's last poke is announced too
        burst = last_poke - started
        assert 1 <= len(listener.times) <= burst / 0.05 + 2, "NOTIFYs were not coalesced"
    finally:
        await wakeup.close()


async def test_a_wake_up_names_the_stream_types_appended_since_the_last_one(
    listener: Listener, pool: asyncpg.Pool[Any]
) -> None:
    wakeup = ProjectorWakeup(pool, min_interval=0.2)
    try:
        wakeup.poke(["Order"])
        await asyncio.sleep(0)  # its NOTIFY is on the way
        wakeup.poke(["Order", "Customer"])  # arrive while the first is in flight: leave together
        wakeup.poke(["Invoice"])
        await listener.next()
        await listener.next()
        wakeup.poke()
        wakeup.poke(["Order"])
        await listener.next()
        assert listener.payloads == ["Order", "Customer,Invoice,Order", ""]
    finally:
        await wakeup.close()


def test_a_projector_wakes_only_for_its_own_stream_types() -> None:
    assert concerns("Order,Invoice", ("Delivery", "Invoice"))
    assert not concerns("Order", ("Customer", "Person"))
    assert concerns("", ("Customer",)), "an empty payload wakes every projector"
