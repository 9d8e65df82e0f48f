"""What read models show of other elements, as the engine serves it (`commands.model.read_models`).

From the declarations it derives, for each read model:
- its **copies** (`Copy`): a column on its element's table, filled from the source when a row is
  written (`lookup`), and refreshed when the source changes: in the same transaction when the source
  is in the same read model (a party's customers: a few rows), by fan-out jobs in chunks when it is
  in another one (a customer's orders: maybe a million rows; `queries.projector.fan_out`);
- the SQL that reads a **joined** or **combined** attribute at query time (`Shows.read`);
- what a consistency wait on it must look at (`Shows.scope`): the stream types whose events it
  shows, the read model that projects each, and the read models whose fan-outs it waits for.

A copy across read models reads the live version of its source; a version being built gets the
fan-out jobs of the live one (`queries.projector.fan_out.JOBS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from commands.model import Element, Model, snake
from commands.model.read_models import ReadModel, Shown, Strategy, source_parts
from queries.model_tables import COLUMN_TYPES, column_name, table_name


@dataclass(frozen=True)
class Source:
    """Where a shown value is read: a column of an element's table, projected by `projection`."""

    element: Element
    column: str
    projection: str

    def table(self, suffix: str = "") -> str:
        return table_name(self.element, suffix)


@dataclass(frozen=True)
class Copy:
    """A copied attribute: `column` on `element`'s table in read model `projection`, equal to the
    first of `sources` that has the row `via` names."""

    shown: Shown
    projection: str
    element: Element
    column: str
    via: str
    """The column holding the source's id."""
    column_type: str
    sources: tuple[Source, ...]

    @property
    def name(self) -> str:
        """What fan-out jobs call it."""
        return f"{self.element.name}.{self.shown.name}"

    @property
    def local(self) -> bool:
        """Its sources are in its own read model: refreshed in the transaction that changes them."""
        return all(s.projection == self.projection for s in self.sources)

    def lookup(self, account: str, key: str, suffix: str = "") -> str:
        """SQL for the value of the row with id `key` of account `account` (SQL expressions); a local
        copy reads its read model's own version (`suffix`), one across read models the live one."""
        reads = [
            f"(SELECT s.{s.column} FROM {s.table(suffix if self.local else '')} s "
            f"WHERE s.account_id = {account} AND s.id = {key})"
            for s in self.sources
        ]
        return reads[0] if len(reads) == 1 else f"coalesce({', '.join(reads)})"

    def index_ddl(self, table: str) -> list[str]:
        """A searched copy's indexes: one that finds the rows of a value (under row-level security only
        a plain column is an index condition), and one in its order (text: blanks first), for a list
        query's pages."""
        if not self.shown.searched:
            return []
        key = f"(coalesce({self.column}, ''))" if self.column_type == "text" else self.column
        name = f"{table}_{self.column}"
        return [
            f"CREATE INDEX IF NOT EXISTS {name}_lookup_idx ON {table} (account_id, {self.column})",
            f"CREATE INDEX IF NOT EXISTS {name}_seek_idx ON {table} (account_id, {key}, id)",
        ]


@dataclass(frozen=True)
class Scope:
    """What a consistency wait on a read model looks at: for each stream type it shows, the read
    model whose checkpoints say how far it is, and the read models whose pending fan-outs hold it."""

    owners: dict[str, str]
    fan_outs: tuple[str, ...]


class Shows:
    """The declarations of a model's read models, resolved against its elements (checked already)."""

    def __init__(self, model: Model, read_models: tuple[ReadModel, ...]) -> None:
        self.model = model
        self.read_models = {r.name: r for r in read_models}
        self.owner = {e: r.name for r in read_models for e in r.elements}
        """Each element's read model."""
        self._shown = {(s.element, s.name): s for r in read_models for s in r.shows}

    def shown(self, element: str, name: str) -> Shown:
        return self._shown[(element, name)]

    @cached_property
    def copies(self) -> tuple[Copy, ...]:
        return tuple(
            self._copy(r.name, s)
            for r in self.read_models.values()
            for s in r.shows
            if s.strategy is Strategy.COPIED
        )

    def in_order(self, copies: list[Copy]) -> list[Copy]:
        """`copies`, each after those whose column it copies (declarations have no cycles)."""

        def depth(copy: Copy) -> int:
            further = [
                c
                for s in copy.sources
                for c in self.copies
                if c.element.name == s.element.name and c.column == s.column
            ]
            return 1 + max((depth(c) for c in further), default=0)

        return sorted(copies, key=depth)

    def copies_into(self, projection: str) -> tuple[Copy, ...]:
        return tuple(c for c in self.copies if c.projection == projection)

    def copies_from(self, element: str, column: str) -> tuple[Copy, ...]:
        """The copies that read `column` of `element`'s table."""
        return tuple(
            c for c in self.copies if any(s.element.name == element and s.column == column for s in c.sources)
        )

    def _copy(self, projection: str, s: Shown) -> Copy:
        element = self.model.elements[s.element]
        sources = tuple(self._source(source) for source in s.sources)
        return Copy(
            s,
            projection,
            element,
            snake(s.name),
            column_name(element.attribute(s.via)),
            self._type(s.sources[0]),
            sources,
        )

    def _source(self, source: str) -> Source:
        element_name, attribute = source_parts(source)
        element = self.model.elements[element_name]
        own = next((a for a in element.attributes if a.name == attribute), None)
        column = column_name(own) if own is not None else snake(attribute)
        return Source(element, column, self.owner[element_name])

    def _type(self, source: str) -> str:
        element_name, attribute = source_parts(source)
        element = self.model.elements[element_name]
        own = next((a for a in element.attributes if a.name == attribute), None)
        if own is not None:
            return COLUMN_TYPES[own.type]
        return self._type(self.shown(element_name, attribute).sources[0])

    def read(self, element: str, name: str, row: str) -> tuple[str, str]:
        """(joins, expression): how a query reads attribute `name` shown on `element`'s rows, whose
        table it reads as `row`: its own column when copied, else the joins to the source tables."""
        s = self.shown(element, name)
        if s.strategy is Strategy.COPIED:
            return "", f"{row}.{snake(s.name)}"
        via = column_name(self.model.elements[element].attribute(s.via))
        joins: list[str] = []
        values: list[str] = []
        for i, source in enumerate(s.sources):
            source_element, attribute = source_parts(source)
            alias = f"{row}_{snake(name)}_{i}"
            target = self.model.elements[source_element]
            joins.append(
                f"LEFT JOIN {table_name(target)} {alias} "
                f"ON {alias}.account_id = {row}.account_id AND {alias}.id = {row}.{via}"
            )
            if (source_element, attribute) in self._shown:  # shown on the source: read as it is there
                more, value = self.read(source_element, attribute, alias)
                joins.append(more)
            else:
                value = f"{alias}.{column_name(target.attribute(attribute))}"
            values.append(value)
        value = values[0] if len(values) == 1 else f"coalesce({', '.join(values)})"
        return "\n".join(j for j in joins if j), value

    def named(self, element: str, name: str, value: str) -> str:
        """SQL for the ids of `element`'s rows whose shown `name` is `value` (an SQL expression), each
        step an index lookup: the copied column, or else the source rows of that value and the rows
        that refer to them."""
        s = self.shown(element, name)
        table = table_name(self.model.elements[element])
        if s.strategy is Strategy.COPIED:
            return f"SELECT n.id FROM {table} n WHERE n.{snake(s.name)} = {value}"
        via = column_name(self.model.elements[element].attribute(s.via))
        sources: list[str] = []
        for source in s.sources:
            source_element, attribute = source_parts(source)
            if (source_element, attribute) in self._shown:
                sources.append(self.named(source_element, attribute, value))
            else:
                target = self.model.elements[source_element]
                column = column_name(target.attribute(attribute))
                sources.append(f"SELECT s.id FROM {table_name(target)} s WHERE s.{column} = {value}")
        return f"SELECT n.id FROM {table} n WHERE n.{via} IN ({' UNION ALL '.join(sources)})"

    def query_scope(self, own: tuple[str, ...], shown: tuple[tuple[str, str], ...]) -> Scope:
        """What a wait for a query looks at when it reads the rows of read models `own` and the
        `shown` attributes (element, name) on them: their own checkpoints, and the scope of each shown
        attribute's source, with no fan-out into `own` it does not read."""
        owners: dict[str, str] = {}
        fan_outs: list[str] = []
        for projection in own:
            for name in self.read_models[projection].elements:
                owners[self.model.elements[name].stream_type] = projection
        for element, name in shown:
            s = self.shown(element, name)
            if s.strategy is Strategy.COPIED and self.owner[element] not in fan_outs:
                fan_outs.append(self.owner[element])
            for source in s.sources:
                self._scope(self.owner[source_parts(source)[0]], owners, fan_outs)
        return Scope(owners, tuple(fan_outs))

    def scope(self, projection: str) -> Scope:
        """The stream types `projection` shows events of (its own, and its sources', through every
        hop), the read model projecting each, and the read models whose fan-outs it waits for."""
        owners: dict[str, str] = {}
        fan_outs: list[str] = []
        self._scope(projection, owners, fan_outs)
        return Scope(owners, tuple(fan_outs))

    def _scope(self, projection: str, owners: dict[str, str], fan_outs: list[str]) -> None:
        if projection in fan_outs:
            return
        fan_outs.append(projection)
        for name in self.read_models[projection].elements:
            owners[self.model.elements[name].stream_type] = projection
        for s in self.read_models[projection].shows:
            for source in s.sources:
                self._scope(self.owner[source_parts(source)[0]], owners, fan_outs)

    def changed_by(self, element: Element, copy: Copy) -> frozenset[str]:
        """The events of `element` that change a column `copy` reads: those that create its row, or
        set, copy or clear the attribute."""
        columns = {s.column for s in copy.sources if s.element.name == element.name}
        if not columns:
            return frozenset()
        names: set[str] = set()
        for decl in element.all_events():
            change = decl.change
            touched = {*change.set, *change.clear, *(a for a, _ in change.copy)}
            touched = {column_name(a) for a in element.attributes if a.name in touched}
            if change.creates or touched & columns:
                names.add(decl.name)
        return frozenset(names)


def copy_column_ddl(copy: Copy, table: str) -> list[str]:
    return [
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {copy.column} {copy.column_type}",
        *copy.index_ddl(table),
    ]
