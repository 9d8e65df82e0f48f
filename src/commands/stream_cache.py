"""Recently used streams' events, kept per process so most commands decide without a load.

A cached history can be stale (another process may have appended since). That
is safe because the append checks every written stream's expected revision:
a decision made on stale state fails with a conflict and the command is then
re-decided on freshly loaded state (see CommandService).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID


@dataclass(frozen=True, slots=True)
class CachedEvent:
    """What replaying an aggregate needs of a stored event."""

    stream_revision: int
    name: str
    payload: Mapping[str, Any]


History = tuple[CachedEvent, ...]


class StreamCache:
    """A least-recently-used map from (account, stream) to the stream's events."""

    def __init__(self, max_streams: int = 20_000) -> None:
        self._max = max_streams
        self._streams: OrderedDict[tuple[UUID, str], History] = OrderedDict()

    def get(self, account_id: UUID, stream_id: str) -> History | None:
        key = (account_id, stream_id)
        history = self._streams.get(key)
        if history is not None:
            self._streams.move_to_end(key)
        return history

    def put(self, account_id: UUID, stream_id: str, history: Sequence[CachedEvent]) -> None:
        key = (account_id, stream_id)
        self._streams[key] = tuple(history)
        self._streams.move_to_end(key)
        while len(self._streams) > self._max:
            self._streams.popitem(last=False)
