"""The per-account command rate limit on the real Redis: bursts, refills, accounts apart, replicas
sharing one budget, configurations refused, and commands let through while Redis is unreachable."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest
import redis.asyncio as redis

from core.settings import Settings
from erp.app import create_app
from erp.bootstrap import Container
from erp.devserver import free_port
from tenancy.rate_limit import PAUSE_AFTER_FAILURE, REDIS_TIMEOUT, AccountRateLimiter, CommandLimit

REDIS_URL = Settings().redis_url
LIMIT = CommandLimit(rate=5, burst=10)
"""10 commands in any 2 s, so 5 per second over time."""

Limiters = Callable[[], AccountRateLimiter]


@pytest.fixture
async def limiters() -> AsyncIterator[Limiters]:
    """Limiters (one per "API replica") on the machine's Redis, under a key prefix of this test's own;
    its keys are deleted afterwards, and nothing else."""
    prefix = f"erp-test-rate-{uuid.uuid4().hex[:12]}"
    made: list[AccountRateLimiter] = []

    def make() -> AccountRateLimiter:
        made.append(AccountRateLimiter(REDIS_URL, LIMIT, key_prefix=prefix))
        return made[-1]

    yield make
    for limiter in made:
        await limiter.close()
    client = redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def hits(limiter: AccountRateLimiter, account: uuid.UUID, count: int) -> list[int | None]:
    return [await limiter.hit(account) for _ in range(count)]


async def test_a_burst_passes_and_beyond_it_the_answer_is_when_to_retry(limiters: Limiters) -> None:
    limiter, account = limiters(), uuid.uuid4()
    answers = await hits(limiter, account, 14)
    assert answers[:10] == [None] * 10
    waits = answers[10:]
    assert all(wait is not None and 1 <= wait <= LIMIT.window for wait in waits), waits
    # The wait is true: after it, the account may send again.
    await asyncio.sleep(max(wait for wait in waits if wait is not None))
    assert await limiter.hit(account) is None


async def test_a_drained_account_refills_at_the_configured_rate(limiters: Limiters) -> None:
    """Sending without pause for 4 s: the burst (10) in the first 2 s window, then 5 per second."""
    limiter, account = limiters(), uuid.uuid4()
    admitted = 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < 2 * LIMIT.window:
        admitted += await limiter.hit(account) is None
        await asyncio.sleep(0.01)
    # `burst` per `window` seconds, so rate * elapsed once a window has passed, give or take a command
    # for each window's rounding (no refill would give 10; `burst` per second, about 40).
    assert abs(admitted - LIMIT.rate * elapsed) <= 3, (admitted, elapsed)


async def test_accounts_have_budgets_of_their_own(limiters: Limiters) -> None:
    limiter, noisy, quiet = limiters(), uuid.uuid4(), uuid.uuid4()
    assert (await hits(limiter, noisy, 11))[-1] is not None
    assert await hits(limiter, quiet, 10) == [None] * 10


async def test_two_api_replicas_share_one_accounts_budget(limiters: Limiters) -> None:
    one, two, account = limiters(), limiters(), uuid.uuid4()
    answers = [await (one if n % 2 else two).hit(account) for n in range(16)]
    assert answers[:10] == [None] * 10
    assert None not in answers[10:], answers


@pytest.mark.parametrize(
    ("rate", "burst", "says"),
    [
        (-1, 400, "at least 1"),
        (200, 0, "at least 1"),
        (200, 100, "at least ERP_COMMAND_RATE"),
        (200, 500, "whole multiple of ERP_COMMAND_RATE (200), 400 or 600"),
    ],
)
def test_a_configuration_that_makes_no_sense_stops_the_api_at_start_up(
    rate: int, burst: int, says: str
) -> None:
    settings = replace(Settings(), command_rate=rate, command_burst=burst)
    with pytest.raises(ValueError, match="ERP_COMMAND_BURST") as refused:
        create_app(settings)
    assert says in str(refused.value)


def test_rate_zero_turns_the_limit_off() -> None:
    settings = replace(Settings(), command_rate=0, command_burst=0)
    create_app(settings)  # where a limit that makes no sense would raise
    assert Container(settings).command_limiter is None


async def test_with_redis_down_commands_go_through_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = AccountRateLimiter(f"redis://127.0.0.1:{free_port()}/0", LIMIT)
    account = uuid.uuid4()
    with caplog.at_level(logging.WARNING, logger="tenancy.rate_limit"):
        answers = await hits(limiter, account, 5)
        await asyncio.sleep(PAUSE_AFTER_FAILURE)  # asks Redis again: it fails again, and says nothing
        answers += await hits(limiter, account, 25)
    await limiter.close()
    assert answers == [None] * 30
    warnings = [r for r in caplog.records if r.name == "tenancy.rate_limit"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "Redis is unreachable" in warnings[0].getMessage()


async def test_a_redis_that_hangs_costs_one_timeout_then_a_pause() -> None:
    """A server that accepts connections and never answers: the first check waits out the timeout
    and lets the command go; the ones after it, within the pause, do not wait at all."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    limiter = AccountRateLimiter(f"redis://127.0.0.1:{port}/0", LIMIT)
    account = uuid.uuid4()
    started = time.monotonic()
    assert await limiter.hit(account) is None
    first = time.monotonic() - started
    assert await hits(limiter, account, 50) == [None] * 50
    rest = time.monotonic() - started - first
    await limiter.close()
    server.close()
    await server.wait_closed()
    assert REDIS_TIMEOUT * 0.9 <= first < REDIS_TIMEOUT * 4, first
    assert rest < 0.1, rest
