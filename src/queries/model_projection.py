"""The generic projection: applies each event's declared Change to its element's table."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property
from typing import Any
from uuid import UUID

import asyncpg

from commands.model import Attr, Element, EventDecl, Model, Type, money_text
from commands.store.feed import RecordedEvent
from queries.model_tables import column_name, element_ddl, table_name
from queries.row_folds import CannotFold, Fold, Key, Row, Stored, TableFold, compile_fold

Statement = tuple[str, Callable[[RecordedEvent], tuple[Any, ...]]]


def _converter(attr: Attr) -> Callable[[Any], Any]:
    if attr.type is Type.ID:
        return lambda v: None if v is None else UUID(v)
    if attr.type is Type.MONEY:
        return lambda v: None if v is None else Decimal(v)
    if attr.type is Type.DATE:
        return lambda v: None if v is None else date.fromisoformat(v)
    if attr.type in (Type.RECORD, Type.RECORDS):
        return _records(attr)
    return lambda v: v


def _records(attr: Attr) -> Callable[[Any], Any]:
    """A record, or a list of them, with its money in the wire's form (`"10.00"`), so that queries
    answer the stored JSON as it is, without a look at each line (an event stored before money
    was kept so may hold `"1E+3"`)."""
    money = [f.name for f in attr.fields if f.type is Type.MONEY]
    if not money:
        return lambda v: v

    def record(value: dict[str, Any]) -> dict[str, Any]:
        for name in money:
            amount = value.get(name)
            if amount is not None and money_text(amount) is not amount:  # not in its wire form
                return value | {n: money_text(value[n]) for n in money if value.get(n) is not None}
        return value  # the common case: as it is, not copied

    if attr.type is Type.RECORD:
        return lambda v: None if v is None else record(v)

    def records(value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value is None:
            return None
        for item in value:
            if record(item) is not item:
                return [record(item) for item in value]
        return value  # the common case: as it is, not copied

    return records


def element_id(event: RecordedEvent) -> UUID:
    return UUID(event.stream_id.split("-", 1)[1])


def compile_statement(element: Element, decl: EventDecl, table: str) -> Statement:
    """The SQL and argument builder that apply one event type to its element's row in `table`."""
    change = decl.change
    copied = [(element.attribute(name), name) for name in change.set if _has(element, name)]
    copied += [(element.attribute(attr), source) for attr, source in change.copy]
    getters: list[Callable[[RecordedEvent], Any]] = [
        lambda e: e.account_id,
        element_id,
        lambda e: e.commit_time,
        lambda e: e.payload.get("Custom") or {},
    ]

    def field(attr: Attr, source: str) -> Callable[[RecordedEvent], Any]:
        convert = _converter(attr)
        return lambda e: convert(e.payload.get(source))

    if change.creates:
        columns = ["account_id", "id", "updated_at", "custom", "status", "created_at"]
        getters.append(lambda e: change.status)
        getters.append(lambda e: e.commit_time)
        for attr, source in copied:
            columns.append(column_name(attr))
            getters.append(field(attr, source))
        placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"
    else:
        assignments = ["updated_at = $3", "custom = custom || $4::jsonb"]
        if change.status is not None:
            getters.append(lambda e: change.status)
            assignments.append(f"status = ${len(getters)}")
        for attr, source in copied:
            getters.append(field(attr, source))
            assignments.append(f"{column_name(attr)} = ${len(getters)}")
        for pairs, operator in ((change.add, "+"), (change.subtract, "-")):
            for name, source in pairs:
                attr = element.attribute(name)
                getters.append(field(attr, source))
                column = column_name(attr)
                assignments.append(f"{column} = coalesce({column}, 0) {operator} ${len(getters)}")
        for name, source in change.append:
            attr = element.attribute(name)
            getters.append(field(attr, source))
            column = column_name(attr)
            assignments.append(
                f"{column} = coalesce({column}, '[]'::jsonb) || jsonb_build_array(${len(getters)}::jsonb)"
            )
        for name in change.clear:
            assignments.append(f"{column_name(element.attribute(name))} = NULL")
        if change.clear_custom:
            assignments[1] = "custom = $4::jsonb"
            getters[3] = lambda e: {}
        sql = f"UPDATE {table} SET {', '.join(assignments)} WHERE account_id = $1 AND id = $2"

    def arguments(event: RecordedEvent) -> tuple[Any, ...]:
        return tuple(get(event) for get in getters)

    return sql, arguments


def _has(element: Element, name: str) -> bool:
    return any(a.name == name for a in element.attributes)


class ModelProjection:
    """A named read model over some of the model's elements (one table each).

    `version` None is the live read model (`rm_<element>` tables, checkpoints under `name`); a
    version is one built beside it (`versioned`), in tables of its own until it is switched in
    (`queries.versions`, `queries.blue_green`).
    """

    def __init__(
        self,
        name: str,
        model: Model,
        elements: Sequence[str],
        *,
        extra_ddl: Callable[[str], str] | None = None,
        version: int | None = None,
    ) -> None:
        self.base_name = name
        self.version = version
        self.suffix = "" if version is None else f"__v{version}"
        """What the version's table names end with."""
        self.name = name if version is None else f"{name}@v{version}"
        """Its checkpoints' and parked events' name."""
        self.model = model
        self.element_names = list(elements)
        self.elements = [model.elements[e] for e in elements]
        self.stream_types: tuple[str, ...] = tuple(e.stream_type for e in self.elements)
        self.extra_ddl = extra_ddl
        """DDL beside the tables (triggers), given the tables' suffix."""
        self.tables = [table_name(e, self.suffix) for e in self.elements]
        self._statements: dict[tuple[str, str], Statement] = {}
        self._folds: dict[tuple[str, str], tuple[bool, Fold]] = {}
        self._element_of: dict[str, tuple[str, Element]] = {}
        for element, table in zip(self.elements, self.tables, strict=True):
            self._element_of[element.stream_type] = (table, element)
            for decl in element.all_events():
                key = (element.stream_type, decl.name)
                self._statements[key] = compile_statement(element, decl, table)
                self._folds[key] = compile_fold(element, decl, _records)

    def versioned(self, version: int) -> ModelProjection:
        """The same read model, as version `version` built beside the live one."""
        return ModelProjection(
            self.base_name, self.model, self.element_names, extra_ddl=self.extra_ddl, version=version
        )

    def ddl(self) -> str:
        """Everything its tables need, idempotent: the tables, their indexes and policies, and the
        DDL beside them."""
        ddl = "\n".join(element_ddl(e, self.suffix) for e in self.elements)
        return ddl + ("\n" + self.extra_ddl(self.suffix) if self.extra_ddl else "")

    @cached_property
    def shape(self) -> str:
        """A fingerprint of what the read model's rows hold and how events make them: its tables'
        DDL and its statements. A change to the model that changes either changes it."""
        live = self
        if self.version is not None:
            live = ModelProjection(self.base_name, self.model, self.element_names, extra_ddl=self.extra_ddl)
        statements = [live._statements[key][0] for key in sorted(live._statements)]
        text = "\n".join([live.ddl(), *statements])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    async def apply(
        self, connection: asyncpg.Connection[Any], events: Sequence[RecordedEvent]
    ) -> list[tuple[RecordedEvent, str]]:
        """Apply in order; runs of the same statement go to the server as one executemany."""
        unknown: list[tuple[RecordedEvent, str]] = []
        """Events it cannot apply: unknown to the model, or with a payload the read model cannot hold."""
        run_sql: str | None = None
        run: list[tuple[Any, ...]] = []
        for event in events:
            statement = self._statements.get((event.stream_type, event.name))
            if statement is None:
                unknown.append((event, f"the model declares no event {event.name} on {event.stream_type}"))
                continue
            sql, arguments = statement
            try:
                row = arguments(event)
            except (ValueError, TypeError, KeyError, ArithmeticError) as error:
                # Its payload does not fit the read model (say money that is no amount): a poison
                # event, as when the database refuses it.
                unknown.append(
                    (event, f"{event.name} does not fit the read model: {type(error).__name__}: {error}")
                )
                continue
            if sql != run_sql and run:
                await connection.executemany(run_sql or "", run)
                run = []
            run_sql = sql
            run.append(row)
        if run:
            await connection.executemany(run_sql or "", run)
        return unknown

    async def apply_bulk(
        self, connection: asyncpg.Connection[Any], events: Sequence[Stored], *, slice_size: int = 2000
    ) -> int:
        """Apply in order, folded (`queries.row_folds`): each row the events touch is read once and
        written once. Raises CannotFold if an event needs `apply` (one the model does not know, a
        payload that does not fit, a row created twice), and the database may refuse a row
        (`REFUSED_BY_READ_MODEL`): run it in a savepoint, which undoes what it wrote then. Gives
        the event loop a turn every `slice_size` events. Returns the rows written."""
        tables: dict[str, TableFold] = {}
        plan: list[tuple[dict[Key, Row | None], Key, Fold, dict[str, Any], datetime]] = []
        seen: dict[str, dict[Key, bool]] = {}
        """Per table, each row the events touch, and whether its first event here creates it."""
        folds = self._folds
        for account_id, stream_id, stream_type, name, payload, commit_time in events:
            fold = folds.get((stream_type, name))
            if fold is None:
                raise CannotFold(f"the model declares no event {name} on {stream_type}")
            table, element = self._element_of[stream_type]
            rows = tables.get(table)
            if rows is None:
                rows = tables[table] = TableFold(table, element)
                seen[table] = {}
            key = (account_id, stream_id.split("-", 1)[1].lower())  # as str(UUID) spells it
            creates, apply = fold
            seen[table].setdefault(key, creates)
            plan.append((rows.rows, key, apply, payload, commit_time))
        for table, rows in tables.items():
            # A row first updated here is in the table already, or nowhere.
            await rows.load(connection, [key for key, creates in seen[table].items() if not creates])
        try:
            for done, (rows_of, key, apply, payload, commit_time) in enumerate(plan, 1):
                rows_of[key] = apply(rows_of.get(key), payload, commit_time, key)
                if done % slice_size == 0:
                    await asyncio.sleep(0)
        except (ValueError, TypeError, KeyError, ArithmeticError, AttributeError) as error:
            raise CannotFold(f"{type(error).__name__}: {error}") from error
        try:
            return sum([await rows.write(connection) for rows in tables.values()])
        except (ValueError, TypeError, ArithmeticError) as error:  # a value COPY cannot encode
            raise CannotFold(f"{type(error).__name__}: {error}") from error

    async def clear(self, connection: asyncpg.Connection[Any], account_id: UUID | None) -> None:
        for table in self.tables:
            if account_id is None:
                await connection.execute(f"DELETE FROM {table}")
            else:
                await connection.execute(f"DELETE FROM {table} WHERE account_id = $1", account_id)
