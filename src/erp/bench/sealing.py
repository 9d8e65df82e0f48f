"""What sealing personal data costs the API (`commands.store.sealing`): HTTP commands/s of a
personal-data mix with sealing on, as a ratio to the same mix with it off, side by side in one run.

Two API processes are started on the stack for the phase (its database, worker, Temporal and Redis):
one seals (ERP_SEAL_PERSONAL_DATA=1, the default), the other runs with ERP_SEAL_PERSONAL_DATA=0 and
stores the same events in the clear. The
same clients send the same mix to each in turn: each client registers a new person of a random
account (Name and Email), renames it twice and adds an address, and again (four commands a person,
each of them personal data). The two sides alternate in short windows, a first one of each not
measured (caches, pools, statements), then rounds of one window each, every other round in the
other order (warm-ups on, off; then off, on; on, off; ...): a machine's drift over the run, and
whatever else it runs meanwhile, then falls on both sides rather than on the later one. Between
windows, the customers projection is let catch up on the persons (not timed), so that one side's
backlog is not projected during the other's window.

Windows of a second, many of them: on a 2-core machine running a test suite meanwhile, two rounds
of 3.3 s windows (a 10 s phase) gave 1.15 in one run and 0.85 in the next; ten rounds of a second
gave 0.83, 0.85 and 0.87 in three runs while RegisterPerson made the person's key in a round trip
of its own (its mean answer time 1.34x the clear one's; renames 1.05x, addresses 1.00x); with the
key stored by the append itself, 0.93 and 0.95.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import aiohttp

from erp.bench.load import run_for
from erp.bench.report import percentile
from erp.bench.stack import Stack
from queries.projector import Checkpoints

CLIENTS = 48
"""Concurrent clients, as `phases.http_commands` has."""
WINDOW = 1.0
"""Seconds of a measured window: `seconds` of each side make that many rounds (at least 2)."""
WARM_UP = 2.0
"""Seconds of each side's first window, not measured."""
NAMES = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov"]
ADDRESS = {"Kind": "Home", "Street": "12 Analytical Row", "City": "London", "Country": "GB"}


@dataclass
class Side:
    """One API's measured windows: commands answered 200, their seconds and answer times."""

    base: str
    commands: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return self.commands / self.seconds if self.seconds else 0.0


@dataclass
class SealingMeasured:
    sealed_per_s: float
    clear_per_s: float
    sealed_p99_ms: float
    clear_p99_ms: float
    sealed_commands: int
    clear_commands: int
    window_s: float
    rounds: int
    """Measured windows of each side, of `window_s` seconds each."""

    @property
    def ratio(self) -> float:
        """Commands/s sealed over commands/s in the clear (target: at least 0.9)."""
        return self.sealed_per_s / self.clear_per_s if self.clear_per_s else float("nan")


async def persons(
    session: aiohttp.ClientSession, base: str, tenants: list[tuple[UUID, str]], seconds: float, clients: int
) -> tuple[list[float], float]:
    """The mix against the API at `base` for `seconds` from `clients` clients: each 200's answer
    time, and the seconds taken. Any other answer raises, with its body. A client stops at the
    deadline between two commands, rather than finishing its person: a window's ragged end (fewer
    clients at work) then lasts one command, not four."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def step(n: int) -> None:
        _, key = tenants[random.randrange(len(tenants))]
        headers = {"Authorization": f"Bearer {key}"}
        person_id = str(uuid.uuid4())
        commands: list[tuple[str, dict[str, Any]]] = [
            (
                "RegisterPerson",
                {"PersonId": person_id, "Name": random.choice(NAMES), "Email": f"{person_id}@example.com"},
            ),
            ("RenamePerson", {"PersonId": person_id, "Name": random.choice(NAMES)}),
            ("RenamePerson", {"PersonId": person_id, "Name": random.choice(NAMES)}),
            ("ChangeAddress", {"PartyId": person_id, "Address": ADDRESS}),
        ]
        for name, body in commands:
            if time.monotonic() >= deadline:
                return
            started = time.perf_counter()
            async with session.post(f"{base}/commands/{name}", json=body, headers=headers) as response:
                answer = await response.read()
                if response.status != 200:
                    text = answer.decode(errors="replace")
                    hint = " (too few accounts for this load: more, with --accounts)" * (
                        response.status == 429
                    )
                    raise RuntimeError(f"{name} at {base} answered {response.status}: {text}{hint}")
            latencies.append(time.perf_counter() - started)

    elapsed = await run_for(seconds, clients, step)
    return latencies, elapsed


async def persons_projected(stack: Stack, tenants: list[tuple[UUID, str]]) -> None:
    """Until the customers projection has applied every account's Person events."""
    checkpoints = Checkpoints("customers", ("Person",))
    pairs = [(account_id, "Person") for account_id, _ in tenants]
    pool = stack.container.databases.main
    while True:
        if not await checkpoints.behind_among(pool, pairs):
            return
        await asyncio.sleep(0.05)


async def sealing_on_and_off(
    stack: Stack,
    session: aiohttp.ClientSession,
    tenants: list[tuple[UUID, str]],
    seconds: float,
    window: float = WINDOW,
    clients: int = CLIENTS,
) -> SealingMeasured:
    """The mix against two new API processes of the stack, one with ERP_SEAL_PERSONAL_DATA=1 and
    one with it 0: a warm-up window of each, then rounds of one `window` each until each side has
    had about `seconds` (two rounds at least). Both are started for the phase, so that neither
    carries what the bench's earlier phases left in its API (a full stream cache, a grown heap:
    against that API, sealed p99 was 197 ms and the ratio 0.79, against 47 ms for the new clear one).
    Takes a little over twice `seconds`, and the two APIs' start."""
    rounds = max(2, round(seconds / window))
    async with (
        stack.another_api("api-sealed", {"ERP_SEAL_PERSONAL_DATA": "1"}) as sealed_base,
        stack.another_api("api-clear", {"ERP_SEAL_PERSONAL_DATA": "0"}) as clear_base,
    ):
        sealed, clear = Side(sealed_base), Side(clear_base)
        for turn in range(rounds + 1):
            for side in (sealed, clear) if turn % 2 == 0 else (clear, sealed):
                length = window if turn else max(window, WARM_UP)
                latencies, elapsed = await persons(session, side.base, tenants, length, clients)
                if turn:  # the first of each side warms it up
                    side.commands += len(latencies)
                    side.seconds += elapsed
                    side.latencies.extend(latencies)
                await persons_projected(stack, tenants)
    return SealingMeasured(
        sealed_per_s=sealed.per_s,
        clear_per_s=clear.per_s,
        sealed_p99_ms=percentile(sealed.latencies, 0.99) * 1000,
        clear_p99_ms=percentile(clear.latencies, 0.99) * 1000,
        sealed_commands=sealed.commands,
        clear_commands=clear.commands,
        window_s=window,
        rounds=rounds,
    )
