"""Bulk application: events folded into their rows in memory, then written set-based.

A rebuild replays many events of each row. Applied one statement per event (`compile_statement`),
it costs a round trip's share and an index update per event. Folded, it costs one row written per
row touched: the rows a chunk of events touches are read once (`SELECT ... = ANY`), each event's
declared Change is applied to its row here, exactly as its SQL would apply it, and the rows go back
with one DELETE and one COPY per table. `ModelProjection.apply_bulk` uses it; a test holds it to
the statements' answers, row for row.

A row is a list in the table's column order, so that it goes to COPY as it is. Values go in as
the database takes them: an id or an amount as the payload's text, which COPY's encoders read (and
refuse, as the statement would, if it is none); an amount is read only to add to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID

import asyncpg

from commands.model import Attr, Element, EventDecl, Type
from queries.model_tables import column_name

Row = list[Any]
Key = tuple[UUID, str]
"""(AccountId, element id as its stream's id spells it): one row."""
Stored = tuple[UUID, str, str, str, dict[str, Any], datetime]
"""An event as the fold takes it: AccountId, StreamId, StreamType, name, payload (in today's
shape), commit time. (Not a `RecordedEvent`: a replay folds millions, and needs no more.)"""
Fold = Callable[[Row | None, dict[str, Any], datetime, Key], Row | None]
"""What one event makes of its row (None: there is none); raises CannotFold when its statement
would fail or its payload does not fit."""
BASE_COLUMNS = ("account_id", "id", "status", "custom", "created_at", "updated_at")
ACCOUNT, ID, STATUS, CUSTOM, CREATED, UPDATED = range(len(BASE_COLUMNS))
CENT = Decimal("0.01")


class CannotFold(Exception):
    """An event the fold cannot apply as its statement would: the chunk goes event by event instead
    (where the read model refuses it, and it is parked)."""


def columns(element: Element) -> list[str]:
    """Every column the model gives the element's table, in a fixed order."""
    return [*BASE_COLUMNS, *(column_name(a) for a in element.attributes)]


def stored(attr: Attr, records: Callable[[Attr], Callable[[Any], Any]]) -> Callable[[Any], Any]:
    """A payload value as COPY takes it for the attribute's column: ids and amounts as they are
    (their encoders read text), dates read, records with their money in the wire's form."""
    if attr.type is Type.DATE:
        return lambda v: None if v is None else date.fromisoformat(v)
    if attr.type in (Type.RECORD, Type.RECORDS):
        return records(attr)
    return lambda v: v


def _amount(value: Any) -> Any:
    """A stored amount to add to, as numeric(18, 2) holds it (rounded half away from zero)."""
    if value is None or type(value) is int:
        return value or 0
    return Decimal(value).quantize(CENT, ROUND_HALF_UP)


def compile_fold(
    element: Element, decl: EventDecl, records: Callable[[Attr], Callable[[Any], Any]], extra: int = 0
) -> tuple[bool, Fold]:
    """Whether the event creates its row, and its fold: the same Change as `compile_statement`'s SQL
    (`records`: how a record attribute's value is converted there; `extra`: columns after the
    model's, which the fold leaves empty: the copies, filled after it)."""
    change = decl.change
    all_columns = columns(element)
    index = {c: i for i, c in enumerate(all_columns)}
    names = {a.name for a in element.attributes}

    def at(attr: Attr) -> int:
        return index[column_name(attr)]

    copied = [(element.attribute(name), name) for name in change.set if name in names]
    copied += [(element.attribute(attr), source) for attr, source in change.copy]
    fields = [(at(a), source, stored(a, records)) for a, source in copied]
    deltas = [
        (at(attr), source, sign, attr.type is Type.MONEY)
        for pairs, sign in ((change.add, 1), (change.subtract, -1))
        for name, source in pairs
        for attr in [element.attribute(name)]
    ]
    appended = [
        (at(element.attribute(name)), source, records(element.attribute(name)))
        for name, source in change.append
    ]
    cleared = [at(element.attribute(name)) for name in change.clear]
    status = change.status
    blank: Row = [None] * (len(all_columns) + extra)

    def create(row: Row | None, payload: dict[str, Any], commit_time: datetime, key: Key) -> Row | None:
        if row is not None:
            raise CannotFold(f"{decl.name} creates a row that exists")  # the INSERT would fail
        created = blank.copy()
        created[ACCOUNT], created[ID] = key
        created[STATUS] = status
        created[CUSTOM] = payload.get("Custom") or {}
        created[CREATED] = created[UPDATED] = commit_time
        for i, source, convert in fields:
            created[i] = convert(payload.get(source))
        return created

    def update(row: Row | None, payload: dict[str, Any], commit_time: datetime, key: Key) -> Row | None:
        if row is None:
            return None  # the UPDATE finds no row, and changes nothing
        row[UPDATED] = commit_time
        custom = payload.get("Custom")
        if custom:
            row[CUSTOM] = {**row[CUSTOM], **custom}
        if status is not None:
            row[STATUS] = status
        for i, source, convert in fields:
            row[i] = convert(payload.get(source))
        for i, source, sign, money in deltas:
            value = payload.get(source)
            if value is None:
                row[i] = None  # coalesce(column, 0) + NULL
            elif money:
                row[i] = (_amount(row[i]) + sign * Decimal(value)).quantize(CENT, ROUND_HALF_UP)
            else:
                row[i] = (row[i] or 0) + sign * value
        for i, source, convert in appended:
            row[i] = [*(row[i] or []), convert(payload.get(source))]
        for i in cleared:
            row[i] = None
        if change.clear_custom:
            row[CUSTOM] = {}
        return row

    return change.creates, create if change.creates else update


class TableFold:
    """The rows of one table that a chunk of events touches, folded in memory, then written back."""

    def __init__(self, table: str, element: Element, extra: Sequence[str] = ()) -> None:
        self.table = table
        self.columns = [*columns(element), *extra]
        self.rows: dict[Key, Row | None] = {}
        self.existing: list[Key] = []
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
            key = (record[ACCOUNT], str(record[ID]))
            self.rows[key] = list(record)
            self.existing.append(key)

    async def write(self, connection: asyncpg.Connection[Any]) -> int:
        """The folded rows in place of the ones read: one DELETE and one COPY; how many rows."""
        if self.existing:
            await connection.execute(
                f"DELETE FROM {self.table} "
                "WHERE (account_id, id) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[]))",
                [a for a, _ in self.existing],
                [i for _, i in self.existing],
            )
        records = [row for row in self.rows.values() if row is not None]
        if records:
            await connection.copy_records_to_table(self.table, records=records, columns=self.columns)
        return len(records)
