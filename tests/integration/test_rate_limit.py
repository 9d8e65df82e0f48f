"""The per-account command rate limit on the real Redis: bursts, refills, accounts apart, replicas
sharing one budget through their looks at Redis, configurations refused, and limits kept per process
while Redis is unreachable."""

from __future__ import annotations

import asyncio
import itertools
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
from tenancy.rate_limit import (
    COMMAND_BYTES,
    PACE_AHEAD,
    REDIS_TIMEOUT,
    AccountRateLimiter,
    CommandLimit,
    Paced,
    Refused,
)

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


def hits(limiter: AccountRateLimiter, account: uuid.UUID, count: int) -> list[Refused | Paced | None]:
    return [limiter.hit(account) for _ in range(count)]


async def test_a_burst_passes_and_beyond_it_the_answer_is_when_to_retry(limiters: Limiters) -> None:
    limiter, account = limiters(), uuid.uuid4()
    await asyncio.sleep(LIMIT.window - time.time() % LIMIT.window)  # a window's start: none slides out
    answers = hits(limiter, account, 14)
    assert answers[:10] == [None] * 10
    refusals = [a for a in answers[10:] if a is not None]
    assert len(refusals) == 4
    assert all(1 <= r.retry_after <= LIMIT.window + 1 for r in refusals), refusals
    assert [r.repeated for r in refusals] == [False, True, True, True]
    # The wait is true: after it, the account may send again (paced, having been refused lately).
    await asyncio.sleep(max(r.retry_after for r in refusals))
    assert not isinstance(limiter.hit(account), Refused)


async def test_a_drained_account_refills_at_the_configured_rate(limiters: Limiters) -> None:
    """Sending without pause for 4 s: the burst (10) at once, then about 5 per second."""
    limiter, account = limiters(), uuid.uuid4()
    limiter.start()
    admitted = 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < 2 * LIMIT.window:
        admitted += not isinstance(limiter.hit(account), Refused)
        await asyncio.sleep(0.01)
    # A sliding window lets the burst through and then `rate` per second, give or take its
    # estimate's rounding (no refill would give 10; `burst` per second, about 40).
    assert abs(admitted - (LIMIT.burst + LIMIT.rate * (elapsed - LIMIT.window))) <= 4, (admitted, elapsed)


async def test_an_account_at_its_limit_is_let_through_evenly_not_in_clumps(limiters: Limiters) -> None:
    """Room that slid out of the window while an account's connections waited (as the API makes a
    refused account wait) is not taken in a clump when they all come back: once refused, an
    account gets one turn every 1/rate seconds, each command told how long to wait for it."""
    limiter, account = limiters(), uuid.uuid4()
    start = (time.time() // LIMIT.window + 1) * LIMIT.window
    assert [limiter.hit(account, now=start) for _ in range(LIMIT.burst)] == [None] * LIMIT.burst
    assert isinstance(limiter.hit(account, now=start), Refused)
    later = start + 1.5 * LIMIT.window  # three quarters of the burst slid out: room for 7 at once
    back = [limiter.hit(account, now=later) for _ in range(20)]
    assert [v for v in back if not isinstance(v, Refused)] == [Paced(0.0)], back
    turns = [later]
    now = later
    while now < later + LIMIT.window:
        now += 0.01
        verdict = limiter.hit(account, now=now)
        if isinstance(verdict, Paced):
            assert 0 <= verdict.wait <= PACE_AHEAD
            turns.append(now + verdict.wait)
        else:
            assert isinstance(verdict, Refused)
    gaps = [b - a for a, b in itertools.pairwise(turns)]
    assert min(gaps) >= 1 / LIMIT.rate - 1e-6, gaps
    assert abs(len(turns) - 1 - LIMIT.rate * LIMIT.window) <= 1, turns


def test_a_body_costs_one_command_per_started_kib_and_at_most_a_burst() -> None:
    assert [LIMIT.cost(size) for size in (0, 1, COMMAND_BYTES)] == [1, 1, 1]
    assert LIMIT.cost(COMMAND_BYTES + 1) == 2
    assert LIMIT.cost(4 * COMMAND_BYTES) == 4
    assert LIMIT.cost(2**30) == LIMIT.burst, "any body fits an empty window"


async def test_a_big_command_takes_its_cost_from_the_burst_and_paces_by_it(limiters: Limiters) -> None:
    """Costs of 4: two fit the burst of 10, a third does not, a command of 2 still does (its turn
    now) and then nothing. Refused lately, the account is paced one turn per cost/rate seconds."""
    limiter, account = limiters(), uuid.uuid4()
    start = (time.time() // LIMIT.window + 1) * LIMIT.window
    assert [limiter.hit(account, now=start, cost=4) for _ in range(2)] == [None, None]
    assert isinstance(limiter.hit(account, now=start, cost=4), Refused)
    assert limiter.hit(account, now=start, cost=2) == Paced(0.0)  # refused lately: paced from now on
    assert isinstance(limiter.hit(account, now=start, cost=1), Refused)
    later = start + 1.5 * LIMIT.window  # half the burst slid out; the account was refused lately
    turns = []
    now = later
    while now < start + 2 * LIMIT.window:
        verdict = limiter.hit(account, now=now, cost=4)
        if isinstance(verdict, Paced):
            turns.append(now + verdict.wait)
        now += 0.01
    gaps = [b - a for a, b in itertools.pairwise(turns)]
    assert len(turns) >= 2 and min(gaps) >= 4 / LIMIT.rate - 1e-6, turns


async def test_accounts_have_budgets_of_their_own(limiters: Limiters) -> None:
    limiter, noisy, quiet = limiters(), uuid.uuid4(), uuid.uuid4()
    assert hits(limiter, noisy, 11)[-1] is not None
    assert hits(limiter, quiet, 10) == [None] * 10


async def test_two_api_replicas_share_one_accounts_budget_through_redis(limiters: Limiters) -> None:
    one, two, account = limiters(), limiters(), uuid.uuid4()
    start = (time.time() // LIMIT.window + 1) * LIMIT.window  # a window's start: nothing slides out
    answers = []
    for n in range(16):
        hitting, other = (one, two) if n % 2 else (two, one)
        answers.append(hitting.hit(account, now=start))
        await hitting.sync(now=start)  # it adds its command to the account's count,
        await other.sync(now=start)  # and the other replica reads that count back
    assert answers[:10] == [None] * 10
    assert None not in answers[10:], answers


async def test_between_looks_each_replica_lets_through_at_most_its_own_share(limiters: Limiters) -> None:
    """What two replicas let through before they look at Redis: each the whole burst at most."""
    one, two, account = limiters(), limiters(), uuid.uuid4()
    start = (time.time() // LIMIT.window + 1) * LIMIT.window
    both = [one.hit(account, now=start) for _ in range(10)] + [two.hit(account, now=start) for _ in range(10)]
    assert both == [None] * 20
    await one.sync(now=start)
    await two.sync(now=start)
    await one.sync(now=start)  # now both know the total
    assert one.hit(account, now=start) is not None and two.hit(account, now=start) is not None


async def test_a_look_at_redis_costs_one_round_trip_for_every_account(limiters: Limiters) -> None:
    limiter = limiters()
    accounts = [uuid.uuid4() for _ in range(500)]
    for account in accounts:
        limiter.hit(account)
    client = redis.from_url(REDIS_URL)
    before = (await client.info("stats"))["total_commands_processed"]
    await limiter.sync()
    after = (await client.info("stats"))["total_commands_processed"]
    await client.aclose()
    # INCRBY, EXPIRE, GET each, in one pipeline; beyond them the INFO and the connection's handshake
    # (Redis < 7, as the embedded 6.2, counts the CLIENT SETINFO it refuses too).
    assert after - before <= 3 * len(accounts) + 4
    assert len(limiter) == 500


async def test_idle_accounts_are_forgotten(limiters: Limiters) -> None:
    limiter = limiters()
    now = time.time()
    for account in [uuid.uuid4() for _ in range(50)]:
        limiter.hit(account, now=now - 3 * LIMIT.window)
    await limiter.sync()  # sends their counts (stale windows)
    await limiter.sync()  # nothing pending, nothing in the last two windows
    assert len(limiter) == 0


@pytest.mark.parametrize(
    ("rate", "burst", "says"),
    [
        (-1, 400, "at least 1"),
        (200, 0, "at least 1"),
        (200, 100, "at least ERP_COMMAND_RATE"),
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


async def test_with_redis_down_each_process_limits_alone_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = AccountRateLimiter(f"redis://127.0.0.1:{free_port()}/0", LIMIT)
    account = uuid.uuid4()
    with caplog.at_level(logging.WARNING, logger="tenancy.rate_limit"):
        answers = hits(limiter, account, 5)
        await limiter.sync()
        answers += hits(limiter, account, 10)
        await limiter.sync()
    await limiter.close()
    assert answers[:10] == [None] * 10 and None not in answers[10:]
    warnings = [r for r in caplog.records if r.name == "tenancy.rate_limit"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "Redis is unreachable" in warnings[0].getMessage()


async def test_a_redis_that_hangs_never_makes_a_command_wait() -> None:
    """A server that accepts connections and never answers: looks time out in the background; every
    check is answered at once."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    limiter = AccountRateLimiter(f"redis://127.0.0.1:{port}/0", LIMIT, sync_every=0.01)
    limiter.start()
    account = uuid.uuid4()
    started = time.monotonic()
    answers = []
    while time.monotonic() - started < 2 * REDIS_TIMEOUT:
        answers.append(limiter.hit(account))
        await asyncio.sleep(0.01)
    await limiter.close()
    server.close()
    await server.wait_closed()
    assert answers[:10] == [None] * 10 and answers[10] is not None
