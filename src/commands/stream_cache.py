"""Recently used streams' events, kept per process so most commands decide without a load.

A cached history can be stale (another process may have appended since). That
is safe because the append checks every written stream's expected revision:
a decision made on stale state fails with a conflict and the command is then
re-decided on freshly loaded state (see CommandService).

The cache is bounded in bytes, not streams: a stream of one 1,000-line order weighs as much as
a hundred small ones. Each event's weight is estimated once, when it enters the cache, from its
payload's JSON length (decoded, a payload takes about five times its JSON in memory; see
`event_bytes`). One account holds at most `account_share` of the whole, so a tenant that writes
big orders evicts its own least recently used streams, not everyone's; a history bigger than half
an account's share is not cached at all (it would evict most of that account's streams, and
loading it costs little next to what it weighs).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import msgspec

MAX_BYTES = 64 * 1024 * 1024
"""The whole cache's default bound (ERP_STREAM_CACHE_BYTES), in estimated bytes."""
ACCOUNT_SHARE = 0.125
"""The part of the cache one account may hold at most."""
JSON_FACTOR = 6
"""Bytes of memory per byte of JSON, for a decoded payload (measured: 3.5 for a reservation,
4.5 for a one-line order, 5.1 for a 1,000-line one, with tracemalloc)."""
EVENT_OVERHEAD = 160
"""Bytes of one cached event beside its payload: the CachedEvent, its name, its slot in a tuple."""
STREAM_OVERHEAD = 400
"""Bytes of one cached stream beside its events: its key, its entries in the two LRU orders."""

_encode = msgspec.json.Encoder().encode


def event_bytes(payload: Mapping[str, Any]) -> int:
    """The memory one cached event takes, estimated from its payload's JSON length (msgspec
    encodes about a gigabyte a second: 60 µs for a 1,000-line order, once per event)."""
    return EVENT_OVERHEAD + JSON_FACTOR * len(_encode(payload))


@dataclass(frozen=True, slots=True)
class CachedEvent:
    """What replaying an aggregate needs of a stored event, and what it weighs in the cache."""

    stream_revision: int
    name: str
    payload: Mapping[str, Any]
    size: int = field(compare=False)
    """Estimated bytes in memory (`event_bytes`), worked out once, when the event is first cached."""


History = tuple[CachedEvent, ...]


def history_bytes(history: Sequence[CachedEvent]) -> int:
    return STREAM_OVERHEAD + sum(e.size for e in history)


class StreamCache:
    """A least-recently-used map from (account, stream) to the stream's events, within `max_bytes`
    in all and `account_share` of that per account."""

    def __init__(self, max_bytes: int = MAX_BYTES, account_share: float = ACCOUNT_SHARE) -> None:
        if max_bytes < 0 or not 0 < account_share <= 1:
            raise ValueError(
                f"a stream cache needs max_bytes >= 0 and 0 < account_share <= 1, got "
                f"{max_bytes} and {account_share}"
            )
        self.max_bytes = max_bytes
        self.max_account_bytes = int(max_bytes * account_share)
        self.max_history_bytes = self.max_account_bytes // 2
        """A history weighing more is not cached."""
        self._streams: OrderedDict[tuple[UUID, str], tuple[History, int]] = OrderedDict()
        self._accounts: dict[UUID, OrderedDict[str, int]] = {}
        """Each account's streams, least recently used first, with their sizes."""
        self._account_bytes: dict[UUID, int] = {}
        self.bytes = 0
        """The estimated bytes held now (never more than `max_bytes`)."""

    def get(self, account_id: UUID, stream_id: str) -> History | None:
        key = (account_id, stream_id)
        entry = self._streams.get(key)
        if entry is None:
            return None
        self._streams.move_to_end(key)
        self._accounts[account_id].move_to_end(stream_id)
        return entry[0]

    def put(self, account_id: UUID, stream_id: str, history: Sequence[CachedEvent]) -> None:
        """Remember the stream's events, unless they weigh more than `max_history_bytes` (then the
        stream is forgotten); evicts the account's own least recently used streams first."""
        self._remove(account_id, stream_id)
        size = history_bytes(history)
        if size > self.max_history_bytes:
            return
        streams = self._accounts.setdefault(account_id, OrderedDict())
        streams[stream_id] = size
        self._streams[(account_id, stream_id)] = (tuple(history), size)
        self._account_bytes[account_id] = self._account_bytes.get(account_id, 0) + size
        self.bytes += size
        while self._account_bytes[account_id] > self.max_account_bytes:
            self._remove(account_id, next(iter(streams)))
        while self.bytes > self.max_bytes:
            oldest_account, oldest_stream = next(iter(self._streams))
            self._remove(oldest_account, oldest_stream)

    def account_bytes(self, account_id: UUID) -> int:
        """The estimated bytes the account's streams hold."""
        return self._account_bytes.get(account_id, 0)

    def __len__(self) -> int:
        return len(self._streams)

    def _remove(self, account_id: UUID, stream_id: str) -> None:
        entry = self._streams.pop((account_id, stream_id), None)
        if entry is None:
            return
        size = entry[1]
        self.bytes -= size
        streams = self._accounts[account_id]
        del streams[stream_id]
        if streams:
            self._account_bytes[account_id] -= size
        else:
            del self._accounts[account_id]
            del self._account_bytes[account_id]
