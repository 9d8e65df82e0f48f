"""Keyset paging for list queries: `Limit` items at a time, `After` the cursor the last page gave.

A cursor is the sort key of the last item sent (URL-safe base64 of its JSON), so a page starts
exactly after it whatever was inserted meanwhile, and the database seeks instead of skipping.
A page also ends before `MAX_PAGE_BYTES` of JSON, whatever `Limit` asked: a page of big orders
holds fewer items, and its `Next` goes on from the first one it left out.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

import asyncpg
import msgspec
from litestar.serialization import encode_json

from core.text import NO_NUL

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_PAGE_BYTES = 1024 * 1024
"""A list query's answer takes at most this many bytes (but for a page whose one item is bigger)."""
MAX_CURSOR = 2048
"""Characters of an `After` cursor: the longest a query gives (a name of 200 characters, each one
escaped as `\\uXXXX`, and an id) fits; a longer one is refused before it is even decoded."""
ENVELOPE = 64 + MAX_CURSOR
"""Bytes of an answer beside its items: `{"Items":[...],"Next":"<cursor>"}`, the longest cursor."""
FIRST_ROWS = 16
"""Rows a page of possibly big rows reads first, before it knows how big they are."""
Limit = Annotated[
    int,
    msgspec.Meta(
        ge=1,
        le=MAX_LIMIT,
        description=f"Items per page (at most {MAX_LIMIT}); a page also ends before its answer "
        f"passes {MAX_PAGE_BYTES // 1024 // 1024} MiB (an item bigger than that alone is a page of its own), "
        "so follow Next until it is absent.",
    ),
]

T = TypeVar("T")


class InvalidCursor(ValueError):
    """`After` is not a cursor this query gave."""


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next: str | None = None
    """The cursor for the following page, None on the last."""


def encode_cursor(key: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(list(key))).decode().rstrip("=")


_ON_THE_WIRE: dict[type, Any] = {
    str: Annotated[str, msgspec.Meta(pattern=NO_NUL)],  # Postgres text cannot hold U+0000
    datetime: Annotated[datetime, msgspec.Meta(tz=True)],  # every cursor's time has its offset
}


@functools.cache
def _cursor_decoder(types: tuple[type, ...]) -> msgspec.json.Decoder[tuple[Any, ...]]:
    wire: Any = tuple[tuple(_ON_THE_WIRE.get(t, t) for t in types)]  # type: ignore[misc]
    return msgspec.json.Decoder(wire)


def decode_cursor(raw: str, types: tuple[type, ...]) -> tuple[Any, ...]:
    """The sort key in `raw`, of `types`; InvalidCursor for anything a query could not have given.

    Checked whole before any SQL sees it: its length, then decoded against exactly `types` (a
    wrong type, a nested list, a part too many or too few is refused at the first byte that does
    not fit, so the decoder never recurses), strings without U+0000, times with their offset and
    within the years Postgres is sent (asyncpg converts them to UTC: year 1 at +01:00 overflows).
    """
    refused = InvalidCursor("After is not a cursor of this query")
    if len(raw) > MAX_CURSOR or not raw.isascii():
        raise refused
    try:
        key = _cursor_decoder(types).decode(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        return tuple(v.astimezone(UTC) if isinstance(v, datetime) else v for v in key)
    except (ValueError, OverflowError):  # binascii's, msgspec's and bad UTF-8 are ValueErrors
        raise refused from None


class _Builder:
    """A page filled item by item until the next would pass `limit` items or `max_bytes`."""

    def __init__(
        self,
        limit: int,
        max_bytes: int,
        key: Callable[[asyncpg.Record], Sequence[Any]],
        view: Callable[[asyncpg.Record], Any],
    ) -> None:
        self.limit, self.max_bytes, self.key, self.view = limit, max_bytes, key, view
        self.items: list[msgspec.Raw] = []
        self.size = ENVELOPE
        self.next: str | None = None
        self._last: asyncpg.Record | None = None

    def add(self, row: asyncpg.Record) -> bool:
        """Take the row's item; False (and `next` set) if the page is full without it."""
        if self._last is not None and len(self.items) == self.limit:
            return self._full(self._last)
        encoded = encode_json(self.view(row))
        if self._last is not None and self.size + len(encoded) + 1 > self.max_bytes:
            return self._full(self._last)
        self.items.append(msgspec.Raw(encoded))
        self.size += len(encoded) + 1
        self._last = row
        return True

    def _full(self, last: asyncpg.Record) -> bool:
        self.next = encode_cursor(self.key(last))
        return False

    def rows_wanted(self) -> int:
        """Rows to fetch next: as many as may still fit, by the items' sizes so far, and one more."""
        room = self.limit - len(self.items)
        average = max(1, (self.size - ENVELOPE) // max(1, len(self.items)))
        return max(0, min(room, (self.max_bytes - self.size) // average)) + 1


async def fetch_page(
    connection: asyncpg.Connection[Any],
    sql: str,
    args: Sequence[Any],
    *,
    limit: int,
    key: Callable[[asyncpg.Record], Sequence[Any]],
    view: Callable[[asyncpg.Record], Any],
    max_bytes: int = MAX_PAGE_BYTES,
    first_rows: int = FIRST_ROWS,
) -> Page[msgspec.Raw]:
    """A page of `sql`'s rows (in `key` order, at most `limit` + 1 of them: the +1 tells whether a
    next page exists), each turned into its item by `view` and encoded as the answer will hold it.

    The page ends before the item that would take it past `limit` items or `max_bytes` of JSON
    (never empty: an item bigger than that alone is a page of its own), and `next` continues from
    there. Rows are read through a cursor, `first_rows` first, then as many as the sizes so far
    say may fit, so a page of big rows never holds more than a few beyond what it sends (a cursor
    needs a transaction: every query runs in its account's); a query whose rows are all small
    passes `first_rows` > `limit` and is read in one round trip.
    """
    page = _Builder(limit, max_bytes, key, view)
    if first_rows > limit:
        for row in await connection.fetch(sql, *args):
            if not page.add(row):
                break
        return Page(page.items, page.next)
    cursor = await connection.cursor(sql, *args)
    wanted = first_rows
    while True:
        rows = await cursor.fetch(wanted)
        for row in rows:
            if not page.add(row):
                return Page(page.items, page.next)
        if len(rows) < wanted:
            return Page(page.items, page.next)
        wanted = page.rows_wanted()
