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
from queries import fan_out_jobs
from queries.chained import ChainedProjection, record_changes
from queries.model_tables import column_name, element_ddl, table_name
from queries.row_folds import CannotFold, Fold, Key, Row, Stored, TableFold, compile_fold
from queries.shown import Copy, Scope, Shows, copy_column_ddl

FAN_OUT_FILLFACTOR = 50
"""How full a table that copies from another read model fills its pages (`ModelProjection.copies_ddl`):
half, so that a fan-out can update every row of a page once in one transaction and each new
version stays on its page (HOT: no index written). Measured on 1,000,000 orders: 2.6 s, every update
HOT, against 18.4 s with 30% free (most updates left their page and wrote every index); the table
takes up to twice the room."""
Changed = dict[tuple[UUID, UUID], tuple[str, int]]
"""Source rows an event changed: (AccountId, the row's id) -> (its stream type, its position)."""

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


def compile_statement(
    element: Element, decl: EventDecl, table: str, shown: Sequence[Copy] = (), suffix: str = ""
) -> Statement:
    """The SQL and argument builder that apply one event type to its element's row in `table`; the
    `shown` copies on it take their source's value when the event sets their reference."""
    change = decl.change
    copied = [(element.attribute(name), name) for name in change.set if _has(element, name)]
    copied += [(element.attribute(attr), source) for attr, source in change.copy]
    sets_via = {column_name(attr) for attr, _ in copied}
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
        values = [f"${i}" for i in range(1, len(columns) + 1)]
        for copy in shown:
            if copy.via in sets_via:
                values.append(copy.lookup("$1", f"${columns.index(copy.via) + 1}", suffix))
                columns.append(copy.column)
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(values)})"
    else:
        assignments = ["updated_at = $3", "custom = custom || $4::jsonb"]
        if change.status is not None:
            getters.append(lambda e: change.status)
            assignments.append(f"status = ${len(getters)}")
        for attr, source in copied:
            getters.append(field(attr, source))
            assignments.append(f"{column_name(attr)} = ${len(getters)}")
            for copy in shown:
                if copy.via == column_name(attr):
                    assignments.append(f"{copy.column} = {copy.lookup('$1', f'${len(getters)}', suffix)}")
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
    (`queries.versions`, `queries.blue_green`). `shows` serves what its rows show of other
    elements (`queries.shown`): its copies are filled when a row is written and refreshed when
    their source changes, in its transaction or by fan-out jobs (`queries.fan_out_jobs`).
    """

    def __init__(
        self,
        name: str,
        model: Model,
        elements: Sequence[str],
        *,
        shows: Shows | None = None,
        feeds: tuple[ChainedProjection, ...] = (),
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
        self.shows = shows
        self.copies = shows.copies_into(name) if shows is not None else ()
        """The attributes its rows show copied from other elements."""
        self.feeds = feeds
        """The read models chained to it (`queries.chained`): the live one notes which of their
        element's rows its batches change."""
        self._watched = frozenset(c.stream_type for c in feeds)
        self.tables = [table_name(e, self.suffix) for e in self.elements]
        self._statements: dict[tuple[str, str], Statement] = {}
        self._folds: dict[tuple[str, str], tuple[bool, Fold]] = {}
        self._element_of: dict[str, tuple[str, Element]] = {}
        self._refreshes: dict[tuple[str, str], tuple[Copy, ...]] = {}
        """Per event, the copies (of any read model) whose source it changes."""
        for element, table in zip(self.elements, self.tables, strict=True):
            self._element_of[element.stream_type] = (table, element)
            shown = [c for c in self.copies if c.element is element]
            for decl in element.all_events():
                key = (element.stream_type, decl.name)
                self._statements[key] = compile_statement(element, decl, table, shown, self.suffix)
                self._folds[key] = compile_fold(element, decl, _records, len(shown))
            if shows is not None:
                for copy in shows.copies:
                    for decl_name in shows.changed_by(element, copy):
                        key = (element.stream_type, decl_name)
                        self._refreshes[key] = (*self._refreshes.get(key, ()), copy)

    @cached_property
    def scope(self) -> Scope:
        """What a consistency wait on it looks at (`queries.shown.Shows.scope`)."""
        if self.shows is None:
            return Scope({t: self.name for t in self.stream_types}, (self.name,))
        return self.shows.scope(self.base_name)

    def versioned(self, version: int) -> ModelProjection:
        """The same read model, as version `version` built beside the live one."""
        return ModelProjection(
            self.base_name,
            self.model,
            self.element_names,
            shows=self.shows,
            feeds=self.feeds,
            version=version,
        )

    def ddl(self) -> str:
        """Everything its tables need, idempotent: the tables, their indexes and policies, and the
        columns of what they show copied."""
        return "\n".join(element_ddl(e, self.suffix) for e in self.elements) + "\n" + self.copies_ddl()

    def copies_ddl(self) -> str:
        """The copies' columns and indexes. A table that copies from another read model keeps room on
        its pages, so that a fan-out's updates of an unindexed column stay on their page (HOT:
        `FAN_OUT_FILLFACTOR`)."""
        statements: list[str] = []
        for copy in self.copies:
            table = table_name(copy.element, self.suffix)
            statements += copy_column_ddl(copy, table)
            if not copy.local:
                statements.append(f"ALTER TABLE {table} SET (fillfactor = {FAN_OUT_FILLFACTOR})")
        return ";\n".join(statements) + (";" if statements else "")

    async def missing_copies(self, connection: asyncpg.Connection[Any]) -> list[Copy]:
        """The copies whose columns its tables lack yet (their columns come with `copies_ddl`)."""
        return [
            copy
            for copy in self.copies
            if not await connection.fetchval(
                "SELECT EXISTS (SELECT FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = $1 AND column_name = $2)",
                table_name(copy.element, self.suffix),
                copy.column,
            )
        ]

    async def fill(self, connection: asyncpg.Connection[Any], copy: Copy) -> None:
        """A copy's column, made now, filled from its source on every row (one statement)."""
        table = table_name(copy.element, self.suffix)
        value = copy.lookup("t.account_id", f"t.{copy.via}", self.suffix)
        await connection.execute(
            f"UPDATE {table} t SET {copy.column} = {value} WHERE t.{copy.via} IS NOT NULL"
        )

    @cached_property
    def shape(self) -> str:
        """A fingerprint of what the read model's rows hold and how events make them: its tables'
        DDL and its statements. A change to the model that changes either changes it."""
        live = self
        if self.version is not None:
            live = ModelProjection(self.base_name, self.model, self.element_names, shows=self.shows)
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
        refused = {id(e) for e, _ in unknown}
        if self._watched and self.version is None:
            await record_changes(
                connection,
                self.name,
                {
                    (e.account_id, element_id(e)): (e.stream_type, e.sequence_number)
                    for e in events
                    if e.stream_type in self._watched and id(e) not in refused
                },
            )
        if self._refreshes:
            changed: dict[Copy, Changed] = {}
            for event in events:
                for copy in self._refreshes.get((event.stream_type, event.name), ()):
                    if id(event) not in refused:
                        key = (event.account_id, element_id(event))
                        changed.setdefault(copy, {}).setdefault(
                            key, (event.stream_type, event.sequence_number)
                        )
            await self.refresh(connection, changed)
        return unknown

    async def refresh(self, connection: asyncpg.Connection[Any], changed: dict[Copy, Changed]) -> None:
        """The copies whose sources changed: those of this read model refreshed now, set-based (and
        what they copy on, in turn); those of another read model left to its fan-out, as jobs. A
        version being built records no jobs: other read models read the live one."""
        while changed:
            further: dict[Copy, Changed] = {}
            for copy, sources in changed.items():
                if copy.projection != self.base_name:
                    if self.version is None:
                        await fan_out_jobs.record(
                            connection,
                            copy.projection,
                            copy.name,
                            (((a, i, t), p) for (a, i), (t, p) in sources.items()),
                        )
                    continue
                rows = await self._refresh_copy(connection, copy, sources)
                if self.shows is None:
                    continue
                for then in self.shows.copies_from(copy.element.name, copy.column):
                    for account_id, row_id, via in rows:
                        further.setdefault(then, {})[(account_id, row_id)] = sources[(account_id, via)]
            changed = further

    async def _refresh_copy(
        self, connection: asyncpg.Connection[Any], copy: Copy, sources: Changed
    ) -> list[tuple[UUID, UUID, UUID]]:
        """Set `copy` from its source on this read model's rows that refer to the changed `sources`;
        (AccountId, id, the source's id) of the rows whose value it changed."""
        table = table_name(copy.element, self.suffix)
        value = copy.lookup("t.account_id", f"t.{copy.via}", self.suffix)
        rows = await connection.fetch(
            f"UPDATE {table} t SET {copy.column} = {value} "
            "FROM unnest($1::uuid[], $2::uuid[]) AS k(account_id, id) "
            f"WHERE t.account_id = k.account_id AND t.{copy.via} = k.id "
            f"AND t.{copy.column} IS DISTINCT FROM {value} "
            f"RETURNING t.account_id, t.id, t.{copy.via} AS via",
            [a for a, _ in sources],
            [i for _, i in sources],
        )
        return [(r["account_id"], r["id"], r["via"]) for r in rows]

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
                extra = [c.column for c in self.copies if c.element is element]
                rows = tables[table] = TableFold(table, element, extra)
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
        for copy in self.copies:
            await self._fill(connection, copy, tables)
        try:
            written = sum([await rows.write(connection) for rows in tables.values()])
        except (ValueError, TypeError, ArithmeticError) as error:  # a value COPY cannot encode
            raise CannotFold(f"{type(error).__name__}: {error}") from error
        if self._refreshes:  # rows of this read model that copy from rows the chunk changed
            changed: dict[Copy, Changed] = {}
            for account_id, stream_id, stream_type, name, _, _ in events:
                for copy in self._refreshes.get((stream_type, name), ()):
                    source = (account_id, UUID(stream_id.split("-", 1)[1]))
                    changed.setdefault(copy, {})[source] = (stream_type, 0)
            await self.refresh(connection, changed)
        return written

    async def _fill(
        self, connection: asyncpg.Connection[Any], copy: Copy, tables: dict[str, TableFold]
    ) -> None:
        """A copy's values on the folded rows of its table, from the source rows folded beside them
        (a source in this read model) or else from the source's table."""
        target = tables.get(table_name(copy.element, self.suffix))
        if target is None:
            return
        at, via = target.columns.index(copy.column), target.columns.index(copy.via)
        wanted = {
            (row[0], str(row[via]).lower())
            for row in target.rows.values()
            if row is not None and row[via] is not None
        }
        values: dict[Key, Any] = {}
        for source in copy.sources:
            table = source.table(self.suffix if copy.local else "")
            folded = tables.get(table) if copy.local else None
            if folded is not None:
                column = folded.columns.index(source.column)
                for key in wanted:
                    row = folded.rows.get(key)
                    if row is not None:
                        values[key] = row[column]
            missing = [key for key in wanted if key not in values]
            if missing:
                for r in await connection.fetch(
                    f"SELECT account_id, id, {source.column} AS value FROM {table} "
                    "WHERE (account_id, id) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[]))",
                    [a for a, _ in missing],
                    [UUID(i) for _, i in missing],
                ):
                    values[(r["account_id"], str(r["id"]))] = r["value"]
            wanted -= values.keys()
        for row in target.rows.values():
            if row is not None and row[via] is not None:
                row[at] = values.get((row[0], str(row[via]).lower()))

    async def clear(self, connection: asyncpg.Connection[Any], account_id: UUID | None) -> None:
        await fan_out_jobs.forget(connection, self.name, account_id)
        for table in self.tables:
            if account_id is None:
                await connection.execute(f"DELETE FROM {table}")
            else:
                await connection.execute(f"DELETE FROM {table} WHERE account_id = $1", account_id)
