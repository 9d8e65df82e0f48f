"""Pages bounded in items and in bytes (`queries.paging.fetch_page`), on a stand-in connection that
counts the rows it is asked for: every row is sent exactly once, in order, no page is empty, a page
ends only when its next item would pass the limit, and a page of big rows reads few rows beyond
what it sends."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from queries.paging import ENVELOPE, decode_cursor, fetch_page

Row = dict[str, Any]


class Rows:
    """A connection whose one query is `rows` after a key, LIMIT the last argument; it counts the
    rows it hands out, by `fetch` or through a cursor."""

    def __init__(self, sizes: Sequence[int]) -> None:
        self.rows = [{"n": n, "filler": "x" * size} for n, size in enumerate(sizes, start=1)]
        self.read = 0

    def _query(self, args: Sequence[Any]) -> list[Row]:
        after, limit = args
        return [r for r in self.rows if after is None or r["n"] > after][:limit]

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        rows = self._query(args)
        self.read += len(rows)
        return rows

    async def cursor(self, sql: str, *args: Any) -> Cursor:
        return Cursor(self, self._query(args))


class Cursor:
    def __init__(self, connection: Rows, rows: list[Row]) -> None:
        self._connection, self._rows = connection, rows

    async def fetch(self, n: int) -> list[Row]:
        taken, self._rows = self._rows[:n], self._rows[n:]
        self._connection.read += len(taken)
        return taken


def view(row: Row) -> dict[str, Any]:
    return {"N": row["n"], "Filler": row["filler"]}


def pages(connection: Rows, limit: int, max_bytes: int, first_rows: int) -> list[tuple[list[int], int]]:
    """Every page, following Next: (the rows' numbers, the items' bytes as the answer holds them)."""

    async def all_pages() -> list[tuple[list[int], int]]:
        found = []
        after: int | None = None
        while True:
            page = await fetch_page(
                connection,  # type: ignore[arg-type]
                "rows",
                (after, limit + 1),
                limit=limit,
                key=lambda r: (r["n"],),
                view=view,
                max_bytes=max_bytes,
                first_rows=first_rows,
            )
            items = [msgspec.json.decode(item) for item in page.items]
            found.append(([i["N"] for i in items], sum(len(item) + 1 for item in page.items)))
            if page.next is None:
                return found
            (after,) = decode_cursor(page.next, (int,))

    return asyncio.run(all_pages())


def item_bytes(size: int, n: int) -> int:
    return len(msgspec.json.encode({"N": n, "Filler": "x" * size})) + 1


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 3_000), max_size=60),
    limit=st.integers(1, 20),
    max_bytes=st.integers(ENVELOPE + 100, 12_000),
    first_rows=st.sampled_from([1, 4, 16, 1_001]),
)
def test_pages_send_every_row_once_and_stop_only_when_the_next_item_would_not_fit(
    sizes: list[int], limit: int, max_bytes: int, first_rows: int
) -> None:
    connection = Rows(sizes)
    found = pages(connection, limit, max_bytes, first_rows)
    sent = [n for numbers, _ in found for n in numbers]
    assert sent == list(range(1, len(sizes) + 1))
    for index, (numbers, size) in enumerate(found):
        assert numbers or len(found) == 1, "only the answer to an empty query is an empty page"
        assert len(numbers) <= limit
        assert ENVELOPE + size <= max_bytes or len(numbers) == 1, (numbers, size)
        if index + 1 < len(found) and len(numbers) < limit:
            following = found[index + 1][0][0]
            assert ENVELOPE + size + item_bytes(sizes[following - 1], following) > max_bytes


def test_an_item_bigger_than_the_limit_is_a_page_of_its_own() -> None:
    found = pages(Rows([10, 50_000, 10, 10]), limit=10, max_bytes=4_000, first_rows=16)
    assert [numbers for numbers, _ in found] == [[1], [2], [3, 4]]


def test_a_page_of_big_rows_reads_few_rows_beyond_what_it_sends() -> None:
    """A thousand rows of 100 kB each asked 1,000 a page with a 1 MiB limit: each page reads its
    first 16, then what may still fit and one more, never the thousand."""
    connection = Rows([100_000] * 1_000)
    found = pages(connection, limit=1_000, max_bytes=1024 * 1024, first_rows=16)
    assert all(len(numbers) == 10 for numbers, _ in found[:-1]), [len(n) for n, _ in found]
    assert connection.read <= 1_000 + 7 * len(found), (connection.read, len(found))
