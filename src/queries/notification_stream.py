"""One account's notification stream, as Server-Sent Events.

Each event's `id:` carries every position the stream has told (`queries.event_ids`). A client that
reconnects with `Last-Event-ID` first hears the current position of each read model and stream
type that moved past what it was told (`queries.resume`), then live notifications: the stream
subscribes before it reads the positions, so nothing between the two is lost (a notification may
come twice; a position never goes back in the id).

An idle stream sends a `: ping` comment every `ping` seconds (proxies keep it open; a client that
left is noticed). A stream whose client reads too slowly for its notifications (its subscriber's
backlog overflowed: `core.subscribers`) gets `event: overflow` and is closed, so the client
resumes with what it was told rather than miss what was dropped. When the server stops
(`draining`), every stream ends at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar.channels import ChannelsPlugin
from litestar.response.sse import ServerSentEventMessage
from redis.exceptions import RedisError

from core.subscribers import OverflowingSubscriber
from queries.event_ids import Told, event_id, told_by
from queries.notifications import Notification, channel_for
from queries.resume import PAIRS, current_positions, missed
from tenancy.routing import Databases, Route

log = logging.getLogger(__name__)

PING = ServerSentEventMessage(comment="ping", data=None)
"""`: ping` and a blank line: a comment, which no client takes for an event."""
OVERFLOW = "overflow"


class NotificationStreams:
    """Streams of each account's notifications for this API process."""

    def __init__(
        self, channels: ChannelsPlugin, databases: Databases, ping: float, draining: asyncio.Event
    ) -> None:
        if ping <= 0:
            raise ValueError(f"ERP_SSE_PING must be above 0 seconds, got {ping}")
        self._channels = channels
        self._databases = databases
        self._ping = ping
        self._draining = draining
        self._decode = msgspec.json.Decoder(Notification).decode

    async def events(self, route: Route, last_event_id: str | None) -> AsyncIterator[ServerSentEventMessage]:
        """The account's stream; resumed from `last_event_id` when the client sent one."""
        resumed = told_by(last_event_id)
        told: Told = {pair: n for pair, n in (resumed or {}).items() if pair in PAIRS}
        subscriber = await self._channels.subscribe(channel_for(route.account_id))
        stopping: asyncio.Future[Any] = asyncio.ensure_future(self._draining.wait())
        receive: asyncio.Future[Any] | None = None
        try:
            if resumed is not None:
                pool = self._databases.pool(route.database)
                for (projection, stream_type), position in missed(
                    told, await current_positions(pool, route.account_id)
                ).items():
                    told[(projection, stream_type)] = position
                    yield _event(Notification(projection, stream_type, position), told)
            events = subscriber.iter_events()
            while not self._draining.is_set():
                if isinstance(subscriber, OverflowingSubscriber) and subscriber.overflowed:
                    yield ServerSentEventMessage(
                        event=OVERFLOW,
                        data="notifications came faster than they were read; reconnect with Last-Event-ID",
                        id=event_id(told),
                    )
                    return
                if receive is None:
                    receive = asyncio.ensure_future(anext(events))
                done, _ = await asyncio.wait(
                    {receive, stopping}, timeout=self._ping, return_when="FIRST_COMPLETED"
                )
                if stopping in done:
                    return
                if receive not in done:
                    yield PING
                    continue
                finished, receive = receive, None
                try:
                    raw = finished.result()
                except StopAsyncIteration:  # unsubscribed: the channels plugin is stopping
                    return
                try:
                    note = self._decode(raw)
                except msgspec.DecodeError:
                    log.warning("a notification that is not one was skipped: %r", raw[:200])
                    continue
                pair = (note.projection, note.stream_type)
                if pair in PAIRS:
                    told[pair] = max(told.get(pair, 0), note.position)
                yield _event(note, told, raw)
        finally:
            stopping.cancel()
            if receive is not None:
                receive.cancel()
            await _unsubscribe(self._channels, subscriber)


_encode = msgspec.json.Encoder().encode


def _event(note: Notification, told: Told, raw: bytes | None = None) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=(raw or _encode(note)).decode(), id=event_id(told))


async def _unsubscribe(channels: ChannelsPlugin, subscriber: Any) -> None:
    try:
        await channels.unsubscribe(subscriber)
    except (RedisError, RuntimeError) as error:  # as for a consistency wait (`queries.waiter`)
        log.info("could not unsubscribe after a notification stream: %r", error)
