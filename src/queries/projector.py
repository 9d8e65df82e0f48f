"""The projector engine: moves projections forward from the event store, exactly once per event.

One batch is one transaction: it claims (locks) the checkpoints of the most
lagging (account, stream type) pairs, reads the events after them in SequenceNumber order,
applies them and stores the new checkpoints. Because SequenceNumbers become
visible strictly in order (see commands.event_store), reading `> checkpoint`
never skips an event, and because the checkpoint moves in the same commit as
the read model, no event is applied twice, even with two projectors (a zombie
after a worker was killed, or a rebuild) running at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
from opentelemetry import trace

from commands.event_store import RecordedEvent
from commands.wakeup import EVENTS_CHANNEL, concerns
from erp import metrics
from erp.db import finish_before_cancelling
from erp.telemetry import traced
from queries.notifications import Notifier, ProjectionAdvanced
from queries.projection import Projection

log = logging.getLogger(__name__)
tracer = trace.get_tracer("erp.projector")


_ADD_MISSING_CHECKPOINTS = """
INSERT INTO projection_checkpoints (projection, account_id, stream_type, position)
SELECT $1, s.account_id, s.stream_type, 0
FROM stream_sequences s
WHERE s.stream_type = ANY($2::text[]) AND ($3::uuid IS NULL OR s.account_id = $3)
  AND NOT EXISTS (
      SELECT 1 FROM projection_checkpoints c
      WHERE c.projection = $1 AND c.account_id = s.account_id AND c.stream_type = s.stream_type)
ON CONFLICT DO NOTHING
"""
# SKIP LOCKED: two projectors (a zombie, a rebuild) work on different accounts instead of waiting.
_CLAIM_LAGGING = """
SELECT c.account_id, c.stream_type, c.position
FROM projection_checkpoints c
JOIN stream_sequences s ON s.account_id = c.account_id AND s.stream_type = c.stream_type
WHERE c.projection = $1 AND c.stream_type = ANY($2::text[]) AND s.last_sequence > c.position
  AND ($3::uuid IS NULL OR c.account_id = $3)
ORDER BY s.last_sequence - c.position DESC
LIMIT $4
FOR UPDATE OF c SKIP LOCKED
"""
_EVENTS_AFTER = """
SELECT e.account_id, e.stream_id, e.stream_type, e.stream_revision, e.sequence_number,
       e.payload_item_name, e.payload, e.commit_time, e.command_id, e.trace_context
FROM unnest($1::uuid[], $2::text[], $3::bigint[]) AS c(account_id, stream_type, position)
CROSS JOIN LATERAL (
    SELECT * FROM events e
    WHERE e.account_id = c.account_id AND e.stream_type = c.stream_type
      AND e.sequence_number > c.position
    ORDER BY e.sequence_number
    LIMIT $4
) e
"""
_SAVE_CHECKPOINTS = """
UPDATE projection_checkpoints c SET position = p.position, updated_at = now()
FROM unnest($2::uuid[], $3::text[], $4::bigint[]) AS p(account_id, stream_type, position)
WHERE c.projection = $1 AND c.account_id = p.account_id AND c.stream_type = p.stream_type
"""
# Locks the account's checkpoints (waiting out a live batch that holds them) and starts them over;
# the live projector claims with SKIP LOCKED and never waits for them, so no deadlock.
_RESTART_CHECKPOINTS = """
UPDATE projection_checkpoints SET position = 0, updated_at = now()
WHERE projection = $1 AND account_id = $2
"""
_ACCOUNTS = """
SELECT DISTINCT account_id FROM stream_sequences WHERE stream_type = ANY($1::text[]) ORDER BY account_id
"""
_STATUS = """
SELECT s.account_id, s.stream_type, s.last_sequence, coalesce(c.position, 0) AS position,
       c.updated_at
FROM stream_sequences s
LEFT JOIN projection_checkpoints c
  ON c.projection = $1 AND c.account_id = s.account_id AND c.stream_type = s.stream_type
WHERE s.stream_type = ANY($2::text[]) AND ($3::uuid IS NULL OR s.account_id = $3)
"""


@dataclass(frozen=True, slots=True)
class Lag:
    """How far a projection is behind the store, summed over accounts."""

    projection: str
    head: int
    position: int

    @property
    def events_behind(self) -> int:
        return self.head - self.position


def _recorded(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(
        account_id=row["account_id"],
        stream_id=row["stream_id"],
        stream_type=row["stream_type"],
        stream_revision=row["stream_revision"],
        sequence_number=row["sequence_number"],
        name=row["payload_item_name"],
        payload=row["payload"],
        commit_time=row["commit_time"],
        command_id=row["command_id"],
        trace_context=row["trace_context"],
    )


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """What one account's rebuild replayed."""

    batches: int
    events: int


REFUSED_BY_READ_MODEL = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)
"""What the database answers for an event its read model cannot hold: park it, do not retry it."""


class Projector:
    """Keeps one projection up to date for every account."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        projection: Projection,
        notifier: Notifier | None = None,
        *,
        batch_size: int = 500,
        pairs_per_batch: int = 50,
        database: str = "main",
    ) -> None:
        self.database = database
        self.pool = pool
        self.projection = projection
        self.notifier = notifier
        self.batch_size = batch_size
        self.pairs_per_batch = pairs_per_batch

    async def run_batch(self, account_id: UUID | None = None) -> list[ProjectionAdvanced]:
        """Apply one batch for the most lagging accounts; returns what advanced (empty when caught up).

        A cancellation (Temporal cancels an activity whose heartbeat stopped) waits for the batch
        to finish: abandoned halfway, it could keep its claimed checkpoints locked forever.
        """
        return await finish_before_cancelling(self._run_batch(account_id))

    async def _run_batch(self, account_id: UUID | None) -> list[ProjectionAdvanced]:
        types = list(self.projection.stream_types)
        links: list[trace.Link] = []
        oldest: list[float] = []
        async with self.pool.acquire() as connection:
            for _ in range(2):
                try:
                    async with connection.transaction():
                        advanced = await self._apply(connection, types, account_id, links, oldest)
                except REFUSED_BY_READ_MODEL:
                    # Rolled back: again, event by event, parking what the read model refuses.
                    links.clear()
                    oldest.clear()
                    async with connection.transaction():
                        advanced = await self._apply(connection, types, account_id, links, oldest, True)
                if advanced:
                    break
                # Nothing claimable: maybe streams whose checkpoints do not exist yet.
                status = await connection.execute(
                    _ADD_MISSING_CHECKPOINTS, self.projection.name, types, account_id
                )
                if status.endswith(" 0"):
                    break
        if advanced and self.notifier is not None:
            await self.notifier.publish(advanced, links)
            if oldest:
                metrics.NOTIFICATION_DELAY.record(
                    time.time() - oldest[0], {"projection": self.projection.name}
                )
        return advanced

    async def _apply(
        self,
        connection: asyncpg.Connection[Any],
        types: list[str],
        account_id: UUID | None,
        links: list[trace.Link],
        oldest: list[float],
        one_by_one: bool = False,
        *,
        live: bool = True,
    ) -> list[ProjectionAdvanced]:
        """Claim, read, apply and checkpoint one batch.

        `links` receives the commands' traces, `oldest` the earliest commit time (for metrics).
        `one_by_one` applies each event in a savepoint of its own and parks those the read model
        refuses; otherwise the batch goes in whole (the common case, without the savepoints' cost).
        A rebuild (`live=False`) replays old events: their age is not a projection delay.
        """
        name = self.projection.name
        claimed = await connection.fetch(_CLAIM_LAGGING, name, types, account_id, self.pairs_per_batch)
        if not claimed:
            return []
        rows = await connection.fetch(
            _EVENTS_AFTER,
            [c["account_id"] for c in claimed],
            [c["stream_type"] for c in claimed],
            [c["position"] for c in claimed],
            self.batch_size,
        )
        if not rows:
            return []
        events = [_recorded(row) for row in rows]
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
            if one_by_one:
                parked = await self._apply_one_by_one(connection, events)
            else:
                parked = await self.projection.apply(connection, events)
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
        await connection.execute(
            _SAVE_CHECKPOINTS,
            name,
            [a for a, _ in last],
            [t for _, t in last],
            list(last.values()),
        )
        return [ProjectionAdvanced(name, a, t, p) for (a, t), p in last.items()]

    async def _apply_one_by_one(
        self, connection: asyncpg.Connection[Any], events: Sequence[RecordedEvent]
    ) -> list[tuple[RecordedEvent, str]]:
        """Apply each event in a savepoint; park the ones the database refuses.

        One event the read model cannot hold (a value out of range, say) must not stall the
        projection for every account in its batch.
        """
        parked: list[tuple[RecordedEvent, str]] = []
        for event in events:
            try:
                async with connection.transaction():  # a savepoint
                    parked.extend(await self.projection.apply(connection, [event]))
            except REFUSED_BY_READ_MODEL as error:
                parked.append((event, f"{type(error).__name__}: {error}"))
        return parked

    async def _park(
        self, connection: asyncpg.Connection[Any], parked: list[tuple[RecordedEvent, str]]
    ) -> None:
        """Set aside events the read model cannot apply, so the rest of the stream keeps flowing."""
        metrics.EVENTS_PARKED.add(len(parked), {"projection": self.projection.name})
        for event, reason in parked:
            log.error(
                "parking %s #%d of account %s in %s: %s",
                event.stream_type,
                event.sequence_number,
                event.account_id,
                self.projection.name,
                reason,
            )
        await connection.executemany(
            "INSERT INTO parked_events (projection, account_id, stream_type, sequence_number, stream_id, "
            "payload_item_name, reason) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            [
                (
                    self.projection.name,
                    e.account_id,
                    e.stream_type,
                    e.sequence_number,
                    e.stream_id,
                    e.name,
                    reason,
                )
                for e, reason in parked
            ],
        )

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
        rows = await self.pool.fetch(_ACCOUNTS, list(self.projection.stream_types))
        return [r["account_id"] for r in rows]

    async def rebuild(self, account_id: UUID, progress: Callable[[int], None] | None = None) -> Rebuilt:
        """Replace one account's read model with a replay of its events, in one transaction.

        Readers see the old rows until the replay commits and the new ones after, never a read
        model half built; a rebuild that fails or is cancelled changes nothing. The account's
        checkpoints stay locked meanwhile, so the live projector passes the account by (SKIP
        LOCKED) and goes on from the rebuilt positions after the commit. `progress` hears the
        number of events applied after each batch. A cancellation takes effect between batches.
        """
        name, types = self.projection.name, list(self.projection.stream_types)
        positions: dict[str, ProjectionAdvanced] = {}
        batches = 0
        with traced(tracer, f"rebuild {name}", attributes={"erp.projection": name}):
            async with self.pool.acquire() as connection:
                # Committed first: a checkpoint row inserted inside the long transaction would make
                # the live projector's own insert of it wait for the whole rebuild.
                await connection.execute(_ADD_MISSING_CHECKPOINTS, name, types, account_id)
            async with self.pool.acquire() as connection, connection.transaction():
                await connection.execute(_RESTART_CHECKPOINTS, name, account_id)
                await self.projection.clear(connection, account_id)
                while advanced := await finish_before_cancelling(self._replay_batch(connection, account_id)):
                    batches += 1
                    positions.update((a.stream_type, a) for a in advanced)
                    if progress is not None:
                        progress(sum(a.position for a in positions.values()))
        if positions and self.notifier is not None:
            await self.notifier.publish(list(positions.values()), [])
        # SequenceNumbers have no gaps per (account, stream type): the positions count the events.
        return Rebuilt(batches, sum(a.position for a in positions.values()))

    async def _replay_batch(
        self, connection: asyncpg.Connection[Any], account_id: UUID
    ) -> list[ProjectionAdvanced]:
        """One batch of a rebuild, in a savepoint: a batch the read model refuses is redone event
        by event, parking what it refuses, as in `_run_batch`."""
        types = list(self.projection.stream_types)
        try:
            async with connection.transaction():
                return await self._apply(connection, types, account_id, [], [], live=False)
        except REFUSED_BY_READ_MODEL:
            async with connection.transaction():
                return await self._apply(connection, types, account_id, [], [], True, live=False)

    async def lag(self, account_id: UUID | None = None) -> Lag:
        """The projection's head (events to apply) and position (events applied)."""
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                _STATUS, self.projection.name, list(self.projection.stream_types), account_id
            )
        return Lag(
            self.projection.name,
            head=sum(r["last_sequence"] for r in rows),
            position=sum(r["position"] for r in rows),
        )

    async def run_forever(
        self,
        dsn: str,
        heartbeat: Callable[[], None] = lambda: None,
        poll_interval: float = 1.0,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Follow the store: wake on NOTIFY (or every `poll_interval`), catch up, repeat.

        Wake-ups for stream types this projection does not project are ignored,
        and the lag gauge is refreshed at most once per `poll_interval`.
        Errors propagate, so the caller (a Temporal activity) retries with backoff.
        """
        wake = asyncio.Event()
        lag_read = -poll_interval
        listener = await asyncpg.connect(dsn)
        try:
            stream_types = self.projection.stream_types

            def woken(_connection: object, _pid: int, _channel: str, payload: str) -> None:
                if concerns(payload, stream_types):
                    wake.set()

            await listener.add_listener(EVENTS_CHANNEL, woken)
            while stop is None or not stop.is_set():
                heartbeat()
                if listener.is_closed():
                    raise ConnectionError("the LISTEN connection to Postgres was closed")
                wake.clear()
                if await self.run_batch():
                    continue
                if self.notifier is not None:
                    await self.notifier.flush_pending()
                if time.monotonic() - lag_read >= poll_interval:
                    lag_read = time.monotonic()
                    lag = await self.lag()
                    metrics.LAG[(self.projection.name, self.database)] = lag.events_behind
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=poll_interval)
        finally:
            await listener.close()


def _links(events: Sequence[RecordedEvent]) -> list[trace.Link]:
    """A span link to each distinct command trace in the batch (at most 128)."""
    links: dict[str, trace.Link] = {}
    for e in events:
        parent = e.trace_context.get("traceparent") if e.trace_context else None
        if parent is None or parent in links or len(links) >= 128:
            continue
        span_context = _parse_traceparent(parent)
        if span_context is not None:
            links[parent] = trace.Link(span_context)
    return list(links.values())


def _parse_traceparent(value: str) -> trace.SpanContext | None:
    parts = value.split("-")
    if len(parts) != 4:
        return None
    try:
        return trace.SpanContext(
            trace_id=int(parts[1], 16),
            span_id=int(parts[2], 16),
            is_remote=True,
            trace_flags=trace.TraceFlags(int(parts[3], 16)),
        )
    except ValueError:
        return None
