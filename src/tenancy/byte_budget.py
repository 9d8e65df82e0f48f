"""Each account's share of one API process's bytes: the request bodies it sends and the list pages
it reads, per second.

A rate limit counts commands, and a thousand-line order counts as one: an account sending and
reading the biggest orders it may took the API's event loop, Postgres and the worker for itself
(heavy neighbour bench: another account's command p99 went from 3 to 49 ms, 16x). Here every
account may move `rate` bytes a second on average, `burst` at once. The cost of an answer is known
only once it is built, so an account can go into debt; while it is in debt its requests are
answered 429 with the seconds until it is paid, before any work. Bodies of ordinary size cost
nothing worth counting (a PlaceOrder of a few lines is 200 bytes: 20,000 a second fit in 4 MiB).

Counted per API process, like the bulkhead: with N processes an account may move N times the rate.
Memory is bounded: at most `max_accounts` accounts (the ones seen longest ago are forgotten first;
an account is forgotten, debt and all, once it has its whole burst back).
"""

from __future__ import annotations

import asyncio
import math
import time
from uuid import UUID

from core.problems import problem

REFUSAL_PAUSE = 1.0
"""Seconds a refusal waits at most before it is answered."""
SWEEP_EVERY = 1024
"""Charges between two looks for accounts with their whole burst back."""
MAX_ACCOUNTS = 100_000
"""Accounts remembered at most (about 150 bytes each: 15 MB)."""


class ByteBudget:
    """At most `rate` bytes a second per account on average, and `burst` at once."""

    def __init__(self, rate: int, burst: int | None = None, max_accounts: int = MAX_ACCOUNTS) -> None:
        if rate < 1:
            raise ValueError(f"ERP_ACCOUNT_BYTES ({rate}) must be at least 1 (0 turns the budget off)")
        self.rate = rate
        self.burst = burst if burst is not None else 4 * rate
        self._max = max_accounts
        self._accounts: dict[UUID, tuple[float, float]] = {}
        """Per account: the bytes it has left (below 0: its debt), and when that was worked out."""
        self._charges = 0

    def _left(self, account_id: UUID, now: float) -> float:
        entry = self._accounts.get(account_id)
        if entry is None:
            return float(self.burst)
        left, at = entry
        return min(float(self.burst), left + (now - at) * self.rate)

    def retry_after(self, account_id: UUID, now: float | None = None) -> int | None:
        """None while the account has bytes left; else whole seconds (at least 1) until its debt is paid."""
        now = time.monotonic() if now is None else now
        left = self._left(account_id, now)
        if left > 0:
            return None
        return max(1, math.ceil(-left / self.rate))

    def charge(self, account_id: UUID, size: int, now: float | None = None) -> None:
        """Count `size` bytes moved for the account (its debt may grow past 0)."""
        if size <= 0:
            return
        now = time.monotonic() if now is None else now
        left = self._left(account_id, now) - size
        self._accounts.pop(account_id, None)  # re-inserted last: the most recently seen
        while len(self._accounts) >= self._max:
            del self._accounts[next(iter(self._accounts))]
        self._accounts[account_id] = (left, now)
        self._charges += 1
        if self._charges % SWEEP_EVERY == 0:
            self._forget_refilled(now)

    def _forget_refilled(self, now: float) -> None:
        """Forget the accounts with their whole burst back, from the least recently charged on,
        up to the first that has not: a look costs what it forgets, not every account kept (one
        left behind goes later, or to the bound)."""
        while self._accounts:
            account_id = next(iter(self._accounts))
            left, at = self._accounts[account_id]
            if left + (now - at) * self.rate < self.burst:
                return
            del self._accounts[account_id]

    def __len__(self) -> int:
        return len(self._accounts)


async def over_budget(budget: ByteBudget, account_id: UUID, *, pause: bool = True) -> None:
    """429 with Retry-After while the account is in debt, before any work on its request. The
    answer waits up to REFUSAL_PAUSE first (unless `pause` is false: the caller holds a slot): a
    client that ignores Retry-After cannot spend the API's time on refusals (parked, a waiting
    request costs nothing)."""
    wait = budget.retry_after(account_id)
    if wait is not None:
        if pause:
            await asyncio.sleep(min(REFUSAL_PAUSE, wait))
        raise problem(
            429,
            f"account {account_id} moved more than its {budget.rate:,} bytes a second of bodies and "
            f"pages lately; retry after {wait} s",
            {"Retry-After": str(wait)},
        )
