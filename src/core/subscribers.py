"""A channels subscriber that knows when it fell behind.

The channels plugin gives each subscriber a backlog of `max_backlog` messages and, past it, drops
the oldest ("dropleft") without a word. A consistency wait or an invalidation listener may lose one
(both re-read the truth); a notification stream must not: its client would never hear of what was
dropped. This subscriber still drops, but remembers that it did (`overflowed`), so the stream can
say so and close, and its client resume from what it was told.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar.channels.subscriber import BacklogStrategy, Subscriber

if TYPE_CHECKING:
    from litestar.channels import ChannelsPlugin


class OverflowingSubscriber(Subscriber):
    """A Subscriber whose `overflowed` turns True once a message found its backlog full."""

    def __init__(
        self,
        plugin: ChannelsPlugin,
        max_backlog: int | None = None,
        backlog_strategy: BacklogStrategy = "backoff",
    ) -> None:
        super().__init__(plugin, max_backlog, backlog_strategy)
        self._max_backlog = max_backlog or 0
        self.overflowed = False

    def put_nowait(self, item: bytes | None) -> bool:
        if self._max_backlog and item is not None and self.qsize >= self._max_backlog:
            self.overflowed = True
        return super().put_nowait(item)
