"""Failed authentications per client address: a stranger guessing keys or operator tokens is slowed
down to `limit` failures a minute, and then answered 429 before any lookup.

Counted in each API process (a sliding window counter per address, the last minute's count
weighing in for the part of it a sliding window would still cover), so N replicas let an address
fail N times the limit: enough to make guessing a 256-bit key or a long token hopeless and to keep
a stranger from spending the catalog's time, not a meter. An address over its limit can still use
a key this process already knows (a tenant behind the same NAT as the stranger keeps working); any
other key, and the operator token, wait until Retry-After.

Memory is bounded: at most `max_addresses` addresses are remembered (about 200 bytes each), the
ones not seen for longest forgotten first.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

WINDOW = 60.0
"""Seconds of the window the limit counts failures in."""
MAX_ADDRESSES = 50_000
"""Addresses remembered at most (about 10 MB)."""


@dataclass(slots=True)
class _Failures:
    window: int
    current: int
    previous: int


class AuthFailures:
    """At most `limit` failed authentications per client address in `window` seconds."""

    def __init__(self, limit: int, window: float = WINDOW, max_addresses: int = MAX_ADDRESSES) -> None:
        if limit < 1:
            raise ValueError(f"ERP_AUTH_FAILURES ({limit}) must be at least 1 (0 turns the limit off)")
        self.limit = limit
        self.window = window
        self._max = max_addresses
        self._addresses: dict[str, _Failures] = {}

    def _weighted(self, state: _Failures, now: float) -> tuple[float, int]:
        """The sliding count of failures at `now`, and the window `now` falls in."""
        window = int(now // self.window)
        if state.window != window:
            state.previous = state.current if state.window == window - 1 else 0
            state.current = 0
            state.window = window
        left_of_previous = 1.0 - (now - window * self.window) / self.window
        return state.previous * left_of_previous + state.current, window

    def retry_after(self, address: str, now: float | None = None) -> int | None:
        """None if the address may try to authenticate; else whole seconds (at least 1) to wait."""
        state = self._addresses.get(address)
        if state is None:
            return None
        now = time.time() if now is None else now
        count, window = self._weighted(state, now)
        room = self.limit - 1  # what the count may be for one more attempt
        if count <= room:
            return None
        # When enough of the previous window has slid out, or (this one's count over the limit on
        # its own) when enough of this one has, once it is the previous.
        start = window * self.window
        if state.current <= room and state.previous:
            at = start + self.window * (1.0 - (room - state.current) / state.previous)
        else:
            at = start + self.window + self.window * max(0.0, 1.0 - room / state.current)
        return max(1, math.ceil(at - now))

    def failed(self, address: str, now: float | None = None) -> None:
        """Count one failed authentication from `address`."""
        now = time.time() if now is None else now
        state = self._addresses.pop(address, None)  # re-inserted last: the most recently seen
        if state is None:
            state = _Failures(int(now // self.window), 0, 0)
            while len(self._addresses) >= self._max:
                del self._addresses[next(iter(self._addresses))]
        self._weighted(state, now)
        state.current += 1
        self._addresses[address] = state

    def __len__(self) -> int:
        return len(self._addresses)
