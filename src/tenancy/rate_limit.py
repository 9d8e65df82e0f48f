"""Per-account command rate limits, kept in Redis so that every API replica draws on one budget.

The limit is `rate` commands per second with bursts of up to `burst`: a sliding window counter
(the algorithm of the `limits` library's `SlidingWindowCounterRateLimiter`) with windows of
`burst / rate` seconds, in which an account may send `burst` commands, the last window's count
weighing in for the part of it a sliding window would still cover. Two counters per account and
window in Redis: constant memory whatever the limit.

Asking Redis for every command, as `limits` does, cost this API a fifth of its commands per second
(two API processes on one stack, limit on against off, alternating 5 s phases: 0.80-0.83). So each
process decides locally, from the counts Redis had at its last look plus what it let through
since, and every `sync_every` seconds adds what it let through to Redis and reads the totals back,
for the accounts with news or near their limit, in one pipelined round trip. A command costs a
few dictionary operations. Two replicas can together let through what each let through between
two looks (100 ms by default) beyond the limit: a limit that shares the API fairly, not a meter
for billing.

An account refused lately is paced: its commands are let through one every 1/rate seconds,
rather than whenever the window has room. A client with many connections that all come back at
once after a refusal would otherwise take a second's worth of room in one clump, and its
neighbours' p99 with it (64 connections flooding at a limit of 200/s got 1 to 254 commands a second
through, from one second to the next; paced, a steady 200).

A command costs by its size: one command for each started `COMMAND_BYTES` of its body (a PlaceOrder
of a few lines costs 1, one of a thousand lines 64). What one command costs the API, the worker and
Postgres grows with its lines, and so does the time it holds the event loop and its share of a
commit: counted as one, an account sending the biggest orders it may (8 a second under the byte
budget's 4 MiB, 80 without) took several times another account's p99 (heavy neighbour bench, 4.2x
for the other's commands at 8 a second, 2.2x at 2).

Redis unreachable: each process goes on limiting with what it has seen itself (so an account gets
the whole limit on each replica), and warns at most every ten seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from litestar.plugins.problem_details import ProblemDetailsException
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from core.metrics import COMMANDS_LIMITED
from core.problems import problem
from core.redis_client import REDIS_UNAVAILABLE, redis_client
from core.settings import Settings

log = logging.getLogger(__name__)

SYNC_EVERY = 0.1
"""Seconds between two looks at Redis (each process, for its accounts at once)."""
WARN_EVERY = 10.0
"""Seconds between two warnings that Redis is unreachable."""
REDIS_TIMEOUT = 0.5
"""Seconds a look at Redis waits (to connect, or for an answer) before it is given up."""
REPEAT_PAUSE = 1.0
"""Seconds an account that keeps sending over its limit waits for each further refusal (at most its
Retry-After): a client that ignores Retry-After cannot spend the API's time on refusals."""
COMMAND_BYTES = 1024
"""Bytes of a command's body that cost one command against the limit (each started KiB)."""
PACE_AHEAD = 0.05
"""Seconds ahead a command of an account at its limit may be given its turn; beyond, it is refused."""


@dataclass(frozen=True, slots=True)
class CommandLimit:
    """At most `burst` commands at once per account, and `rate` per second over time."""

    rate: int
    burst: int

    def cost(self, size: int) -> int:
        """Commands a body of `size` bytes costs: one per started COMMAND_BYTES, at least one, at
        most a whole burst (so that any body fits once the account's window is empty)."""
        return min(self.burst, max(1, -(-size // COMMAND_BYTES)))

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

    @property
    def window(self) -> float:
        """Seconds in which an account may send `burst` commands."""
        return self.burst / self.rate

    def __str__(self) -> str:
        return f"{self.rate} commands per second (burst {self.burst})"


def command_limit(settings: Settings) -> CommandLimit | None:
    """The configured limit (ERP_COMMAND_RATE, ERP_COMMAND_BURST), or None when the rate is 0.

    Raises ValueError for one that makes no sense, so that the API refuses to start with it.
    """
    if settings.command_rate == 0:
        return None
    return CommandLimit(settings.command_rate, settings.command_burst)


@dataclass(frozen=True, slots=True)
class Refused:
    """A command over its account's limit."""

    retry_after: int
    """Whole seconds (at least 1) until the account may send another."""
    repeated: bool
    """The account was refused already in this window, by this process."""


@dataclass(frozen=True, slots=True)
class Paced:
    """A command of an account at its limit, let through once its turn comes."""

    wait: float
    """Seconds until its turn (at most PACE_AHEAD)."""


@dataclass(slots=True)
class _Account:
    """One account's counts as this process knows them, by window number."""

    known: dict[int, int] = field(default_factory=dict)
    """Redis's totals at the last look (every process's commands)."""
    pending: dict[int, int] = field(default_factory=dict)
    """Let through here since, not yet added to Redis."""
    refused_in: int = -1
    """The last window in which this process refused the account."""
    expiring: int = -1
    """The last window whose key this process gave its expiry."""
    settled: int = -1
    """The last window whose previous window's total this process read (it changes no more)."""
    next_turn: float = 0.0
    """When this process may let through the account's next command while it is paced."""

    def count(self, window: int) -> int:
        return self.known.get(window, 0) + self.pending.get(window, 0)


class AccountRateLimiter:
    """Each account's command budget, in Redis at `redis_url` under keys starting with `key_prefix`."""

    def __init__(
        self,
        redis_url: str,
        limit: CommandLimit,
        *,
        key_prefix: str = "erp.rate",
        cluster: bool = False,
        sync_every: float = SYNC_EVERY,
    ) -> None:
        self.limit = limit
        self._prefix = key_prefix
        self._sync_every = sync_every
        self._redis = redis_client(
            redis_url,
            cluster=cluster,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            **({} if cluster else {"retry": Retry(NoBackoff(), 0)}),
        )
        self._accounts: dict[UUID, _Account] = {}
        self._touched: set[UUID] = set()
        """Accounts with commands let through since the last look."""
        self._near: set[UUID] = set()
        """Accounts at half their burst or more: looked at on every look, to hear the others' counts."""
        self._swept = -1
        self._syncing: asyncio.Task[None] | None = None
        self._warned_at = -math.inf

    def _key(self, account_id: UUID, window: int) -> str:
        # The account's id in braces: on a Redis Cluster its windows share a slot (and a node).
        return f"{self._prefix}:{{{account_id}}}:{window}"

    def hit(self, account_id: UUID, now: float | None = None, cost: int = 1) -> Refused | Paced | None:
        """Count a command of `cost` (`CommandLimit.cost`) against the account: None if it may go
        ahead, Paced if it may once its turn comes, else Refused (when to retry).

        Decided here, from Redis's counts at the last look and what this process let through since.
        An account refused in this window or the last one is paced: its commands are let through
        one every cost/rate seconds, evenly, rather than in clumps whenever the sliding window has
        room, so that many connections kept at the limit cost the API a steady trickle.
        """
        now = time.time() if now is None else now
        span = self.limit.window
        window = int(now // span)
        state = self._accounts.get(account_id)
        if state is None:
            state = self._accounts[account_id] = _Account()
        for old in [w for w in state.known if w < window - 1]:
            del state.known[old]
        previous, current = state.count(window - 1), state.count(window)
        left_of_previous = 1.0 - (now - window * span) / span
        if previous * left_of_previous + current + cost <= self.limit.burst:
            if state.refused_in < window - 1:
                self._admit(account_id, state, window, cost)
                return None
            turn = max(now, state.next_turn)
            if turn - now <= PACE_AHEAD:
                state.next_turn = turn + cost / self.limit.rate
                self._admit(account_id, state, window, cost)
                return Paced(turn - now)
            retry_after = 1
        else:
            retry_after = self._retry_after(now, window, previous, current, cost)
        COMMANDS_LIMITED.add(1)
        repeated = state.refused_in == window
        if state.refused_in < window - 1:
            state.next_turn = now  # paced from now on
        state.refused_in = window
        return Refused(retry_after, repeated)

    def charge(self, account_id: UUID, cost: int, now: float | None = None) -> None:
        """Count `cost` more against the account after the fact (a chunked body's size is known only
        once it is read): never refused, but the account's next commands wait for it."""
        if cost <= 0:
            return
        now = time.time() if now is None else now
        state = self._accounts.get(account_id)
        if state is None:
            state = self._accounts[account_id] = _Account()
        self._admit(account_id, state, int(now // self.limit.window), cost)

    def _admit(self, account_id: UUID, state: _Account, window: int, cost: int) -> None:
        state.pending[window] = state.pending.get(window, 0) + cost
        self._touched.add(account_id)

    def _retry_after(self, now: float, window: int, previous: int, current: int, cost: int) -> int:
        """Seconds until previous * (what is left of it) + current + cost fits the burst again."""
        span, burst = self.limit.window, self.limit.burst
        start = window * span
        if current + cost <= burst and previous:
            # Within this window, once enough of the previous one has slid out.
            at = start + span * (1.0 - (burst - cost - current) / previous)
        else:
            # In the next window, once enough of this one has slid out.
            at = start + span + span * max(0.0, 1.0 - (burst - cost) / max(current, 1))
        return max(1, math.ceil(at - now))

    async def sync(self, now: float | None = None) -> None:
        """Add what this process let through to Redis and read back the totals, for the accounts
        with something to add or near their limit, in one pipelined round trip. Once a window,
        accounts idle for two windows are forgotten. What was let through in windows that no longer
        count is dropped, so an outage of Redis holds no more than two windows of counts."""
        window = int((time.time() if now is None else now) // self.limit.window)
        if window != self._swept:
            self._sweep(window)
        asked: list[tuple[UUID, int, int | None]] = []
        """In the pipeline's order: (account, window, count sent) for an INCRBY, (account, window,
        -1) for its EXPIRE, (account, window, None) for a GET."""
        pipe: Any = self._redis.pipeline(transaction=False)
        expiry = math.ceil(self.limit.window * 2) + 1
        looked = self._touched | self._near
        self._touched = set()
        for account_id in looked:
            state = self._accounts.get(account_id)
            if state is None:
                continue
            for old in [w for w in state.pending if w < window - 1]:
                del state.pending[old]
            if state.count(window - 1) + state.count(window) < self.limit.burst / 2:
                self._near.discard(account_id)
                if not state.pending:
                    continue  # far from its limit, and nothing to add: no need to look
            else:
                self._near.add(account_id)
            for w, count in state.pending.items():
                pipe.incrby(self._key(account_id, w), count)
                asked.append((account_id, w, count))
                if w > state.expiring:  # once per window is enough
                    pipe.expire(self._key(account_id, w), expiry)
                    asked.append((account_id, w, -1))
            if window not in state.pending:
                pipe.get(self._key(account_id, window))
                asked.append((account_id, window, None))
            if state.settled < window and window - 1 not in state.pending:
                pipe.get(self._key(account_id, window - 1))
                asked.append((account_id, window - 1, None))
        if not asked:
            return
        try:
            answers = iter(await pipe.execute())
        except REDIS_UNAVAILABLE as error:
            self._touched |= {account_id for account_id, _, _ in asked}  # try them again next time
            moment = time.monotonic()
            if moment - self._warned_at >= WARN_EVERY:
                self._warned_at = moment
                log.warning(
                    "command rate limits are kept per API process while Redis is unreachable: %s", error
                )
            return
        for account_id, w, sent in asked:
            answer = next(answers)
            state = self._accounts[account_id]
            if sent == -1:
                state.expiring = max(state.expiring, w)  # EXPIRE's answer
                continue
            state.known[w] = int(answer or 0)
            if w == window - 1:
                state.settled = window
            if sent is not None and w in state.pending:
                state.pending[w] -= sent  # what came in while we waited stays pending
                if state.pending[w] <= 0:
                    del state.pending[w]

    def _sweep(self, window: int) -> None:
        """Forget the accounts idle for two windows (once a window: a cost spread over its looks)."""
        self._swept = window
        for account_id, state in list(self._accounts.items()):
            recent = any(count for w, count in state.known.items() if w >= window - 1)
            if not recent and not any(w >= window - 1 for w in state.pending):
                del self._accounts[account_id]
                self._near.discard(account_id)
                self._touched.discard(account_id)

    def start(self) -> None:
        """Look at Redis every `sync_every` seconds from now on, until `close()`."""
        if self._syncing is None:
            self._syncing = asyncio.create_task(self._sync_forever())

    async def _sync_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sync_every)
            try:
                await self.sync()
            except Exception:  # a bug must not stop the limiter's looks for good
                log.exception("could not sync command rate limits; trying again")

    def refusal(self, account_id: UUID, refused: Refused) -> ProblemDetailsException:
        """The 429 for a command over the account's limit."""
        return problem(
            429,
            f"account {account_id} is over its limit of {self.limit} (a body counts as one command "
            f"per started {COMMAND_BYTES:,} bytes); retry after {refused.retry_after} s",
            {"Retry-After": str(refused.retry_after)},
        )

    def __len__(self) -> int:
        """Accounts this process keeps counts for (those active in the last two windows)."""
        return len(self._accounts)

    async def close(self) -> None:
        if self._syncing is not None:
            self._syncing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._syncing
            self._syncing = None
        with contextlib.suppress(*REDIS_UNAVAILABLE):
            await self.sync()  # what was let through since the last look still counts
        await self._redis.aclose()
