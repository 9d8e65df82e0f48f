"""The ceiling in the bench: PlaceOrder commands/s of the API as a ratio to a bare app of its shape,
and of one account alone as a ratio to the load spread over the accounts.

`api_and_bare`: the same clients (`phases.place_orders`, 48 of them) send the same PlaceOrders to the
API and to the bare app (`erp.bench.bare`: the same route, body, decoding and answer, no I/O, served
by uvicorn as the API is, as many processes), in alternating windows: a warm-up of the bare app, then
rounds of one window each, every other round in the other order, so that the machine's drift and
whatever else it runs meanwhile fall on both sides (as `sealing` does). After each of the API's
windows the orders projection is let catch up on what it wrote (not timed): its backlog would
otherwise be projected during the bare app's next window, on the same cores.

`one_account`: the same clients all sending to one account, against every account's load in
alternating windows, on an API started for the line with the accounts' rate limit off
(ERP_COMMAND_RATE=0): with it on, one account's 48 clients are answered 429 beyond 100 commands a
second, and the line would measure the limit. What it measures is what one account's commands share:
the per-process limit on one account's commands in progress at once (ERP_ACCOUNT_CONCURRENCY), its
sequence numbers, its rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

import aiohttp

from erp.bench.phases import place_orders, wait_projected
from erp.bench.report import percentile
from erp.bench.stack import Stack

WINDOW = 1.0
"""Seconds of a measured window: `seconds` of each side make that many rounds (at least 2)."""
WARM_UP = 2.0
"""Seconds of a first window of a side not yet warm (not measured)."""


@dataclass
class Side:
    """One side's measured windows: PlaceOrders answered 200, their answer times, other answers."""

    base: str
    tenants: list[tuple[UUID, str]]
    projected: bool = True
    """Whether what it answers is written and projected (the bare app's positions are its own count)."""
    commands: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return self.commands / self.seconds if self.seconds else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 0.50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 0.99) * 1000


@dataclass
class SideBySide:
    """Two sides measured in alternating windows: `first`'s commands/s as a ratio to `second`'s."""

    first: Side
    second: Side
    window_s: float
    rounds: int

    @property
    def ratio(self) -> float:
        return self.first.per_s / self.second.per_s if self.second.per_s else float("nan")


async def alternate(
    stack: Stack,
    session: aiohttp.ClientSession,
    sides: tuple[Side, Side],
    seconds: float,
    warm: Sequence[bool] = (True, True),
    window: float = WINDOW,
) -> SideBySide:
    """`place_orders` against each side in turn: a warm-up window of each side not `warm`, then
    rounds of one `window` of each until each has had about `seconds` (two rounds at least), every
    other round in the other order; the projector let catch up after each window (not timed)."""
    pool = stack.container.databases.main
    rounds = max(2, round(seconds / window))
    for side, ready in zip(sides, warm, strict=True):
        if not ready:
            warming = await place_orders(session, side.base, side.tenants, WARM_UP)
            if side.projected:
                await wait_projected(pool, warming.heads)
    for turn in range(rounds):
        for side in sides if turn % 2 == 0 else sides[::-1]:
            measured = await place_orders(session, side.base, side.tenants, window)
            side.commands += len(measured.latencies)
            side.errors += measured.errors
            side.seconds += measured.seconds
            side.latencies.extend(measured.latencies)
            if side.projected:
                await wait_projected(pool, measured.heads)
    return SideBySide(sides[0], sides[1], window, rounds)


async def api_and_bare(
    stack: Stack, session: aiohttp.ClientSession, tenants: list[tuple[UUID, str]], seconds: float
) -> SideBySide:
    """The API (warm: the bench's phases before this one) against the bare app, side by side."""
    api, bare = Side(stack.base, tenants), Side(stack.bare_base, tenants, projected=False)
    return await alternate(stack, session, (api, bare), seconds, warm=(True, False))


async def one_account(
    stack: Stack,
    session: aiohttp.ClientSession,
    tenants: list[tuple[UUID, str]],
    alone: tuple[UUID, str],
    seconds: float,
) -> SideBySide:
    """Every client on the account `alone`, against the load over all `tenants`, side by side, on an
    API started for the line with the rate limit off. Takes a little over twice `seconds`, and the
    API's start."""
    async with stack.another_api("api-unlimited", {"ERP_COMMAND_RATE": "0"}) as base:
        one, every = Side(base, [alone]), Side(base, tenants)
        return await alternate(stack, session, (one, every), seconds, warm=(False, False))
