"""Keyset paging for list queries: `Limit` items at a time, `After` the cursor the last page gave.

A cursor is the sort key of the last item sent (URL-safe base64 of its JSON), so a page starts
exactly after it whatever was inserted meanwhile, and the database seeks instead of skipping.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

import msgspec

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
Limit = Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT, description=f"Items per page (at most {MAX_LIMIT}).")]

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


def decode_cursor(raw: str, types: tuple[type, ...]) -> tuple[Any, ...]:
    """The sort key in `raw`, converted to `types`; InvalidCursor for anything else."""
    refused = InvalidCursor("After is not a cursor of this query")
    try:
        values = msgspec.json.decode(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise refused from None
    if not isinstance(values, list) or len(values) != len(types):
        raise refused
    try:
        return tuple(msgspec.convert(v, t) for v, t in zip(values, types, strict=True))
    except msgspec.ValidationError:
        raise refused from None


def page_of(rows: Sequence[T], limit: int, key: Any) -> Page[T]:
    """The first `limit` rows (the query fetched one more to know whether a next page exists)."""
    if len(rows) <= limit:
        return Page(list(rows))
    kept = list(rows[:limit])
    return Page(kept, encode_cursor(key(kept[-1])))
