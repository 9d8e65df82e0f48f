"""The projector's batches: moves a projection forward from the event store, exactly once per event.

The live projector keeps a work set: the (account, stream type) pairs it knows lag, found from
the sequence counters changed since its last look (`Checkpoints.changed_since`), so finding work
costs what there is to do, and idle accounts cost nothing.

One batch is one transaction: it claims (locks) the checkpoints of the most
lagging (account, stream type) pairs, reads the events after them in SequenceNumber order,
applies them and stores the new checkpoints. Because SequenceNumbers become
visible strictly in order (see commands.store.event_store), reading `> checkpoint`
never skips an event, and because the checkpoint moves in the same commit as
the read model, no event is applied twice, even with two projectors (a zombie
after a worker was killed, or a rebuild) running at once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from commands.store.feed import EventFeed, Position, RecordedEvent
from core import metrics
from core.db import finish_before_cancelling
from core.telemetry import traced
from queries.notifications import Notifier, ProjectionAdvanced
from queries.projection import Projection
from queries.projector import parking
from queries.projector.checkpoints import Checkpoints, Lag, Pair
from queries.projector.parking import REFUSED_BY_READ_MODEL

log = logging.getLogger(__name__)
tracer = trace.get_tracer("erp.projector")


class RefusedInBatch(Exception):
    """The projection refused an event of a batch applied whole (`Projection.apply` returned it):
    later events of its stream in the batch may have been applied past it, so the batch is rolled
    back and redone one by one."""


REDO_ONE_BY_ONE = (*REFUSED_BY_READ_MODEL, RefusedInBatch)
"""What rolls a batch back, to apply it again event by event, parking what is refused."""


@dataclass
class Claim:
    """What one batch claimed: the candidates (the work set's first `pairs_per_batch`), and the
    pairs it locked among them, each with the head it was claimed at."""

    candidates: list[Pair] = field(default_factory=list)
    heads: dict[Pair, int] = field(default_factory=dict)


class Projector:
    """Keeps one projection up to date for every account."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        projection: Projection,
        feed: EventFeed,
        notifier: Notifier | None = None,
        *,
        batch_size: int = 5000,
        pairs_per_batch: int = 500,
        database: str = "main",
    ) -> None:
        self.database = database
        self.pool = pool
        self.projection = projection
        self.feed = feed
        """Where events come from, decoded and upcast as every reader sees them."""
        self.checkpoints = Checkpoints(projection.name, projection.stream_types)
        self.notifier = notifier
        self.batch_size = batch_size
        """Events one batch applies at most, shared evenly by the pairs it claims: a backlog in one
        account takes its share of a batch, not the batch, so other accounts wait one batch at most."""
        self.pairs_per_batch = pairs_per_batch
        """Pairs one batch claims at most: many accounts with a few new events each make one batch."""
        self._work: dict[Pair, None] = {}
        """Pairs known to lag, oldest first: found from the counters changed since the last look
        (`find_work`). A batch claims the first `pairs_per_batch` (those no other projector holds),
        and a pair it did not finish goes to the back, so a batch's cost grows with the batch, not
        with the work waiting, and every pair waits its turn."""
        self._horizon = 0
        """Where the next look starts: the snapshot xmin of the last (0: look at every counter once)."""

    async def run_batch(self, account_id: UUID | None = None) -> list[ProjectionAdvanced]:
        """Apply one batch for the most lagging accounts; returns what advanced (empty when caught up).

        A cancellation (Temporal cancels an activity whose heartbeat stopped) waits for the batch
        to finish: abandoned halfway, it could keep its claimed checkpoints locked forever.
        """
        return await finish_before_cancelling(self._run_batch(account_id))

    async def find_work(self, connection: asyncpg.Connection[Any]) -> None:
        """Add the pairs whose counters moved since the last look to the work set. It costs what
        changed: idle accounts are never looked at (after the first look, which sees them all)."""
        self._horizon, found = await self.checkpoints.changed_since(connection, self._horizon)
        self._work.update(dict.fromkeys(found))

    async def _run_batch(self, account_id: UUID | None) -> list[ProjectionAdvanced]:
        links: list[trace.Link] = []
        oldest: list[float] = []
        async with self.pool.acquire() as connection:
            if account_id is None:
                await self.find_work(connection)
                if not self._work:
                    return []
            for _ in range(2):
                claim = Claim()
                try:
                    async with connection.transaction():
                        advanced = await self.apply(connection, account_id, links, oldest, claim=claim)
                except REDO_ONE_BY_ONE:
                    # Rolled back: again, event by event, parking what the read model refuses.
                    links.clear()
                    oldest.clear()
                    claim = Claim()
                    async with connection.transaction():
                        advanced = await self.apply(connection, account_id, links, oldest, True, claim=claim)
                if account_id is None:
                    await self._settle(connection, advanced, claim)
                    if claim.heads or not claim.candidates:
                        break
                    # Every candidate was another projector's (a zombie's, a rebuild's): settled
                    # to the back of the work set, so once more with the pairs behind them.
                    continue
                if advanced:
                    break
                # Nothing claimable: maybe streams whose checkpoints do not exist yet.
                if not await self.checkpoints.add_missing(connection, account_id):
                    break
        if advanced and self.notifier is not None:
            await self.notifier.publish(advanced, links)
            if oldest:
                metrics.NOTIFICATION_DELAY.record(
                    time.time() - oldest[0], {"projection": self.projection.name}
                )
        return advanced

    async def _settle(
        self, connection: asyncpg.Connection[Any], advanced: list[ProjectionAdvanced], claim: Claim
    ) -> None:
        """After a committed batch: pairs it brought to the head they were claimed at leave the work
        set, and the others it claimed go to its back. Candidates it did not claim are looked at:
        the caught-up ones leave, the others (another projector's, for now) go to the back too."""
        reached = {(a.account_id, a.stream_type): a.position for a in advanced}
        for pair, head in claim.heads.items():
            self._work.pop(pair, None)
            if reached.get(pair, 0) < head:
                self._work[pair] = None
        unclaimed = [pair for pair in claim.candidates if pair not in claim.heads]
        if unclaimed:
            behind = await self.checkpoints.behind_among(connection, unclaimed)
            for pair in unclaimed:
                if self._work.pop(pair, 0) is None and pair in behind:
                    self._work[pair] = None

    async def apply(
        self,
        connection: asyncpg.Connection[Any],
        account_id: UUID | None,
        links: list[trace.Link],
        oldest: list[float],
        one_by_one: bool = False,
        *,
        live: bool = True,
        claim: Claim | None = None,
    ) -> list[ProjectionAdvanced]:
        """Claim, read, apply and checkpoint one batch.

        `links` receives the commands' traces, `oldest` the earliest commit time (for metrics).
        `one_by_one` applies each event in a savepoint of its own and parks those the read model
        refuses; otherwise the batch goes in whole (the common case, without the savepoints' cost).
        Either way, events of a stream with parked events wait behind them, parked too
        (`queries.projector.parking`).
        A rebuild (`live=False`) replays old events: their age is not a projection delay.
        """
        if account_id is None:
            claim = claim or Claim()
            claim.candidates = list(itertools.islice(self._work, self.pairs_per_batch))
            claims = await self.checkpoints.claim_among(connection, claim.candidates, self.pairs_per_batch)
            claim.heads = {(p.account_id, p.stream_type): head for p, head in claims}
            claimed = [p for p, _ in claims]
        else:
            claimed = await self.checkpoints.claim_lagging(connection, account_id, self.pairs_per_batch)
        if not claimed:
            return []
        share = -(-self.batch_size // len(claimed))  # each claimed pair's share, rounded up
        events = await self.feed.after(connection, claimed, share, lenient=True)
        return await self.apply_read(connection, claimed, events, links, oldest, one_by_one, live=live)

    async def apply_read(
        self,
        connection: asyncpg.Connection[Any],
        claimed: Sequence[Position],
        events: Sequence[RecordedEvent],
        links: list[trace.Link],
        oldest: list[float],
        one_by_one: bool = False,
        *,
        live: bool = True,
    ) -> list[ProjectionAdvanced]:
        """Apply, park and checkpoint `events`, read after the `claimed` checkpoints (locked)."""
        if not events:
            return []
        name = self.projection.name
        links.extend(_links(events))
        oldest.append(min(e.commit_time for e in events).timestamp())
        with traced(
            tracer,
            f"project {name}",
            links=links,
            attributes={
                "erp.projection": name,
                "erp.events": len(events),
                "erp.accounts": len({e.account_id for e in events}),
            },
        ):
            held = await parking.held_streams(connection, name, claimed)
            if one_by_one:
                parked = await self._apply_one_by_one(connection, events, held)
            else:
                parked = [(e, _held_reason(e, f), f) for e in events if (f := _first(held, e)) is not None]
                ready = [e for e in events if _first(held, e) is None] if parked else events
                if any(e.undecodable for e in ready) or await self.projection.apply(connection, ready):
                    raise RefusedInBatch
            if parked:
                await self._park(connection, parked)
        last: dict[tuple[UUID, str], int] = {}
        for e in events:
            key = (e.account_id, e.stream_type)
            last[key] = max(last.get(key, 0), e.sequence_number)
        labels = {"projection": name}
        metrics.EVENTS_PROJECTED.add(len(events), labels)
        if live:
            now = time.time()
            for e in events:
                metrics.PROJECTION_DELAY.record(now - e.commit_time.timestamp(), labels)
        await self.checkpoints.save(connection, last)
        return [ProjectionAdvanced(name, a, t, p) for (a, t), p in last.items()]

    async def _apply_one_by_one(
        self,
        connection: asyncpg.Connection[Any],
        events: Sequence[RecordedEvent],
        held: dict[tuple[UUID, str], int],
    ) -> list[parking.Parked]:
        """Apply each event in a savepoint; park the ones the read model refuses, and the later
        events of their streams behind them (`held` grows with each refusal).

        One event the read model cannot hold (a value out of range, say) must not stall the
        projection for every account in its batch, nor be passed by its own stream's next events.
        """
        parked: list[parking.Parked] = []
        for _, same_row in itertools.groupby(events, key=_stored_as):
            # The events an upcaster split one stored event into go in together, or not at all.
            together = list(same_row)
            event = together[0]
            first = _first(held, event)
            if first is not None:
                parked.append((event, _held_reason(event, first), first))
                continue
            refusals = await parking.apply_or_refusals(connection, self.projection, together)
            if refusals:
                parked.append((event, refusals[0][1], None))
                held[(event.account_id, event.stream_id)] = event.sequence_number
        return parked

    async def _park(self, connection: asyncpg.Connection[Any], parked: list[parking.Parked]) -> None:
        """Set aside events the read model refused and those held behind them; the checkpoint moves
        on, so the rest of the account and every other account keep flowing."""
        labels = {"projection": self.projection.name}
        parked = list(
            {_stored_as(event): (event, reason, behind) for event, reason, behind in parked}.values()
        )
        refused = [(event, reason) for event, reason, behind in parked if behind is None]
        for event, _, behind in parked:
            if behind is not None and self.feed.sealing.personal.erases(event.stream_type, event.name):
                # An erasure does not wait behind a refused event to clear its subject's rows: it is
                # applied now as well (its data reads as null from here on, so the stream's release
                # applies nothing personal again, and then the erasure once more, in order).
                await parking.apply_or_refusals(connection, self.projection, [event])
        metrics.EVENTS_PARKED.add(len(refused), labels)
        metrics.EVENTS_HELD.add(len(parked) - len(refused), labels)
        for event, reason in refused:
            log.error(
                "parking %s #%d (%s) of account %s in %s, and its stream's later events behind it: %s",
                event.stream_type,
                event.sequence_number,
                event.stream_id,
                event.account_id,
                self.projection.name,
                reason,
            )
        await parking.park(connection, self.projection.name, parked)

    async def catch_up(
        self,
        account_id: UUID | None = None,
        *,
        progress: Callable[[Lag], None] | None = None,
        every: float = 2.0,
        pause: float = 0.02,
    ) -> int:
        """Run batches until nothing lags; returns the number of batches this projector applied.

        Another projector may hold some checkpoints (claims skip locked rows), so
        "nothing to claim" is not "caught up": it waits for that one to finish.
        `progress` hears the lag at most every `every` seconds.
        """
        batches = 0
        reported = time.monotonic()
        while True:
            if await self.run_batch(account_id):
                batches += 1
                if progress is not None and time.monotonic() - reported >= every:
                    progress(await self.lag(account_id))
                    reported = time.monotonic()
            elif (await self.lag(account_id)).events_behind <= 0:
                return batches
            else:
                await asyncio.sleep(pause)

    async def accounts(self) -> list[UUID]:
        """Every account with events this projection projects, in a fixed order."""
        return await self.checkpoints.accounts(self.pool)

    async def lag(self, account_id: UUID | None = None) -> Lag:
        """The projection's head (events to apply) and position (events applied), over every
        account (or one): a look at every counter, for operators, not for the live loop."""
        return await self.checkpoints.lag(self.pool, account_id)

    async def backlog(self) -> int:
        """Events this projector knows it still has to apply: its work set's lag (what the live
        loop reports as `erp.projection.lag`), at a cost that grows with the work, not the accounts."""
        if not self._work:
            return 0
        return sum((await self.checkpoints.behind_among(self.pool, self._work)).values())


def _stored_as(event: RecordedEvent) -> tuple[UUID, str, int]:
    """The stored event an event was read from (an upcaster may split one into several)."""
    return event.account_id, event.stream_type, event.sequence_number


def _first(held: dict[tuple[UUID, str], int], event: RecordedEvent) -> int | None:
    """The refused event the event's stream waits behind, if any."""
    return held.get((event.account_id, event.stream_id))


def _held_reason(event: RecordedEvent, first: int) -> str:
    return f"held behind #{first} of {event.stream_id}, which the read model refused"


_TRACE_CONTEXT = TraceContextTextMapPropagator()


def _links(events: Sequence[RecordedEvent]) -> list[trace.Link]:
    """A span link to each distinct command trace in the batch (at most 128)."""
    links: dict[str, trace.Link] = {}
    for e in events:
        parent = e.trace_context.get("traceparent") if e.trace_context else None
        if parent is None or parent in links or len(links) >= 128:
            continue
        context = trace.get_current_span(_TRACE_CONTEXT.extract(e.trace_context)).get_span_context()
        if context.is_valid:
            links[parent] = trace.Link(context)
    return list(links.values())
