"""Bulk application: events folded into their rows in memory, then written set-based.

A rebuild replays many events of each row. Applied one statement per event (`compile_statement`),
it costs a round trip's share and an index update per event. Folded, it costs one row written per
row touched: the rows a chunk of events touches are read once (`SELECT ... = ANY`), each event's
declared Change is applied to its row here, exactly as its SQL would apply it, and the rows go back
with one DELETE and one COPY per table. `ModelProjection.apply_bulk` uses it; a test holds it to
the statements' answers, row for row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID

import asyncpg

from commands.model import Attr, Element, EventDecl, Type
from commands.store.feed import RecordedEvent
from queries.model_tables import column_name

Row = dict[str, Any]
Key = tuple[UUID, UUID]
"""(AccountId, element id): one row."""
Fold = Callable[[Row | None, RecordedEvent], Row | None]
"""What one event makes of its row (None: there is none); raises CannotFold when its statement
would fail or its payload does not fit."""
BASE_COLUMNS = ("account_id", "id", "status", "custom", "created_at", "updated_at")
CENT = Decimal("0.01")


class CannotFold(Exception):
    """An event the fold cannot apply as its statement would: the chunk goes event by event instead
    (where the read model refuses it, and it is parked)."""


def columns(element: Element) -> list[str]:
    """Every column the model gives the element's table, in a fixed order."""
    return [*BASE_COLUMNS, *(column_name(a) for a in element.attributes)]


def _stored(attr: Attr, convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A payload value as its column holds it: money rounded to the cent, as numeric(18, 2) does."""
    if attr.type is not Type.MONEY:
        return convert

    def money(value: Any) -> Any:
        amount = convert(value)
        return None if amount is None else amount.quantize(CENT, ROUND_HALF_UP)

    return money


def compile_fold(
    element: Element, decl: EventDecl, converter: Callable[[Attr], Callable[[Any], Any]]
) -> tuple[bool, Fold]:
    """Whether the event creates its row, and its fold: the same Change as `compile_statement`'s SQL."""
    change = decl.change
    names = {a.name for a in element.attributes}
    copied = [(element.attribute(name), name) for name in change.set if name in names]
    copied += [(element.attribute(attr), source) for attr, source in change.copy]
    fields = [(column_name(a), source, _stored(a, converter(a))) for a, source in copied]
    deltas = [
        (column_name(attr), source, _stored(attr, converter(attr)), sign)
        for pairs, sign in ((change.add, 1), (change.subtract, -1))
        for name, source in pairs
        for attr in [element.attribute(name)]
    ]
    appended = [
        (column_name(element.attribute(name)), source, converter(element.attribute(name)))
        for name, source in change.append
    ]
    all_columns = columns(element)
    status = change.status

    def create(row: Row | None, event: RecordedEvent) -> Row | None:
        if row is not None:
            raise CannotFold(f"{event.name} creates a row that exists")  # the INSERT would fail
        created: Row = dict.fromkeys(all_columns)
        created.update(
            account_id=event.account_id,
            id=UUID(event.stream_id.split("-", 1)[1]),
            status=status,
            custom=event.payload.get("Custom") or {},
            created_at=event.commit_time,
            updated_at=event.commit_time,
        )
        payload = event.payload
        for column, source, convert in fields:
            created[column] = convert(payload.get(source))
        return created

    def update(row: Row | None, event: RecordedEvent) -> Row | None:
        if row is None:
            return None  # the UPDATE finds no row, and changes nothing
        payload = event.payload
        row["updated_at"] = event.commit_time
        custom = payload.get("Custom") or {}
        if custom:
            row["custom"] = {**row["custom"], **custom}
        if status is not None:
            row["status"] = status
        for column, source, convert in fields:
            row[column] = convert(payload.get(source))
        for column, source, convert, sign in deltas:
            amount = convert(payload.get(source))
            now = row[column] or 0
            row[column] = None if amount is None else _round(now + sign * amount)
        for column, source, convert in appended:
            row[column] = [*(row[column] or []), convert(payload.get(source))]
        return row

    return change.creates, create if change.creates else update


def _round(value: Any) -> Any:
    return value.quantize(CENT, ROUND_HALF_UP) if isinstance(value, Decimal) else value


class TableFold:
    """The rows of one table that a chunk of events touches, folded in memory, then written back."""

    def __init__(self, table: str, element: Element) -> None:
        self.table = table
        self.columns = columns(element)
        self.rows: dict[Key, Row | None] = {}
        self.existing: set[Key] = set()
        """Rows read from the table: deleted before the folded ones are copied in."""

    async def load(self, connection: asyncpg.Connection[Any], keys: Sequence[Key]) -> None:
        """Read the rows the chunk updates but does not create (those before its first event)."""
        if not keys:
            return
        rows = await connection.fetch(
            f"SELECT {', '.join(self.columns)} FROM {self.table} "
            "WHERE (account_id, id) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[]))",
            [a for a, _ in keys],
            [i for _, i in keys],
        )
        self.rows.update(dict.fromkeys(keys))
        for record in rows:
            key = (record["account_id"], record["id"])
            self.rows[key] = dict(record)
            self.existing.add(key)

    async def write(self, connection: asyncpg.Connection[Any]) -> int:
        """The folded rows in place of the ones read: one DELETE and one COPY; how many rows."""
        if self.existing:
            gone = list(self.existing)
            await connection.execute(
                f"DELETE FROM {self.table} "
                "WHERE (account_id, id) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[]))",
                [a for a, _ in gone],
                [i for _, i in gone],
            )
        records = [tuple(row[c] for c in self.columns) for row in self.rows.values() if row is not None]
        if records:
            await connection.copy_records_to_table(self.table, records=records, columns=self.columns)
        return len(records)
