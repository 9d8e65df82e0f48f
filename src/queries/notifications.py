"""Consistency notifications on Redis pub/sub: one channel per account.

The projector publishes `{"Projection", "StreamType", "Position"}` after each
committed batch (on a Redis Cluster, sharded: SPUBLISH where the servers have it).
If Redis is down the latest position per pair is kept and published again later;
clients also fall back to reading checkpoints, so a lost notification delays
nobody for long.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from uuid import UUID

import msgspec
from opentelemetry import trace

from core.redis_client import REDIS_UNAVAILABLE, RedisClient
from core.redis_pubsub import Publisher
from core.telemetry import traced

log = logging.getLogger(__name__)
tracer = trace.get_tracer("erp.notifications")

CHANNEL_PREFIX = "erp.account."


def channel_for(account_id: UUID) -> str:
    return f"{CHANNEL_PREFIX}{account_id}"


class ProjectionAdvanced(msgspec.Struct, frozen=True, rename="pascal"):
    """A read model of one account now includes every event up to `position` of `stream_type`."""

    projection: str
    account_id: UUID
    stream_type: str
    position: int


class Notification(msgspec.Struct, frozen=True, rename="pascal"):
    """What clients receive (the account is implied by the channel)."""

    projection: str
    stream_type: str
    position: int


_encoder = msgspec.json.Encoder()


class Notifier:
    """Publishes ProjectionAdvanced to each account's channel; keeps what Redis could not take."""

    def __init__(self, client: RedisClient) -> None:
        self._publisher = Publisher(client)
        self._pending: dict[tuple[str, UUID, str], int] = {}

    async def publish(self, advanced: Iterable[ProjectionAdvanced], links: Sequence[trace.Link] = ()) -> None:
        """Announce each advanced (projection, account, stream type); `links` are the commands' traces."""
        for a in advanced:
            key = (a.projection, a.account_id, a.stream_type)
            self._pending[key] = max(self._pending.get(key, 0), a.position)
        await self.flush_pending(links)

    async def flush_pending(self, links: Sequence[trace.Link] = ()) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        with traced(tracer, "notify", links=links, attributes={"erp.notifications": len(pending)}):
            try:
                await self._publisher.publish(
                    (channel_for(account), _encoder.encode(Notification(projection, stream_type, position)))
                    for (projection, account, stream_type), position in pending.items()
                )
            except REDIS_UNAVAILABLE as error:
                log.warning("could not publish %d notifications: %s", len(pending), error)
                for key, position in pending.items():
                    self._pending[key] = max(self._pending.get(key, 0), position)
