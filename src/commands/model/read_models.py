"""Read models in the model language: which elements each shows, and how it shows another element's data.

The seed's last problem (slides 52-58): a projection shows information from the customer stream and
from the order stream, and "a customer update could mean that we need to update 1.000.000+ rows".
A read model declares, for each attribute it shows from another element, which of the seed's
answers serves it (`Strategy`); the projection engine implements each one generically
(`queries.shown`, `queries.projector.fan_out`).

Declarations are checked when the model is built (`check_read_models`), so a bad one stops the
process at start-up with the file and line it was written on, never at the first event.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from commands.model.language import Attr, Element, Type


class Strategy(StrEnum):
    """How a read model shows an attribute of another element (the seed's slides 54-58)."""

    JOINED = "joined"
    """Read at query time from the source element's own table: a rename costs one row; every query
    pays the joins (one per hop, one per alternative element)."""
    COPIED = "copied"
    """Copied onto each row that shows it: a query reads its own row; a change fans out to every row
    that refers to the source, set-based, in chunks that commit quickly, checkpointed."""
    COMBINED = "combined"
    """Read at query time from one shared table: the referenced element's, which holds what it shows
    from further elements copied in. Several read models join that one table, one join each."""


def _declared_at() -> str:
    """Where the declaration being made was written: `package/file.py:line` (for start-up errors)."""
    frame = sys._getframe(3)  # _declared_at <- __post_init__ <- __init__ <- the declaration
    path = Path(frame.f_code.co_filename)
    return f"{path.parent.name}/{path.name}:{frame.f_lineno}"


@dataclass(frozen=True)
class Shown:
    """An attribute that rows of `element` show from another element, reached through `via`.

    `sources` names it as `Element.Attribute`, one per element the reference may name (a party is
    a Person or an Organisation): the first that has the row answers. Its name on the rows is `name`.
    """

    element: str
    name: str
    via: str
    sources: tuple[str, ...]
    strategy: Strategy
    searched: bool = False
    """Queries look rows up by it: its column gets an index (only where it is copied)."""
    line: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.line:
            object.__setattr__(self, "line", _declared_at())


@dataclass(frozen=True)
class ReadModel:
    """A named read model: one table per element, and what its rows show from other elements."""

    name: str
    elements: tuple[str, ...]
    shows: tuple[Shown, ...] = ()
    line: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.line:
            object.__setattr__(self, "line", _declared_at())


@dataclass(frozen=True)
class Chained:
    """A read model fed by another one: by the changes that one makes to `element`'s rows, not by
    events, with a checkpoint of its own (`queries.chained`). Its rows are `element`'s rows of
    `fed_by` grouped by the reference `group_by`: how many, and the total of each of `sums`."""

    name: str
    fed_by: str
    element: str
    group_by: str
    sums: tuple[str, ...]
    line: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.line:
            object.__setattr__(self, "line", _declared_at())


class BadDeclaration(ValueError):
    """A read-model declaration the engine cannot serve; the message starts with its file and line."""


def _fail(line: str, message: str) -> BadDeclaration:
    return BadDeclaration(f"{line}: {message}")


def source_parts(source: str) -> tuple[str, str]:
    element, _, attribute = source.partition(".")
    return element, attribute


def check_read_models(
    elements: dict[str, Element], read_models: tuple[ReadModel, ...], chained: tuple[Chained, ...] = ()
) -> None:
    """Refuse a declaration the engine cannot serve, naming the line it was written on."""
    owner: dict[str, str] = {}
    names: set[str] = set()
    for read_model in read_models:
        if read_model.name in names:
            raise _fail(read_model.line, f"a read model named {read_model.name!r} is declared twice")
        names.add(read_model.name)
        for name in read_model.elements:
            if name not in elements:
                raise _fail(
                    read_model.line, f"{read_model.name} shows {name}, which is no element of the model"
                )
            if name in owner:
                raise _fail(read_model.line, f"{name} is in read model {owner[name]} already")
            owner[name] = read_model.name
    shown = {(s.element, s.name): s for r in read_models for s in r.shows}
    for read_model in read_models:
        for s in read_model.shows:
            _check_shown(elements, owner, shown, read_model, s)
    for s in shown.values():
        _check_no_cycle(shown, s, ())
    for c in chained:
        if c.name in names:
            raise _fail(c.line, f"a read model named {c.name!r} is declared twice")
        names.add(c.name)
    by_name = {r.name: r for r in read_models}
    for c in chained:
        _check_chained(elements, by_name, c)


def _check_chained(elements: dict[str, Element], read_models: dict[str, ReadModel], c: Chained) -> None:
    if c.fed_by == c.name:
        raise _fail(c.line, f"{c.name} is fed by itself")
    source = read_models.get(c.fed_by)
    if source is None:
        raise _fail(c.line, f"{c.name} is fed by {c.fed_by}, which is no read model of events")
    if c.element not in source.elements:
        raise _fail(c.line, f"{c.fed_by} has no rows of {c.element} to feed {c.name}")
    element = elements[c.element]
    group = _attribute(element, c.group_by)
    if group is None or group.type is not Type.ID or group.references is None:
        raise _fail(c.line, f"{c.element}.{c.group_by} refers to no element: {c.name} cannot group by it")
    for name in c.sums:
        attr = _attribute(element, name)
        if attr is None:
            raise _fail(c.line, f"{c.element} has no attribute {name} to total")
        if attr.type not in (Type.MONEY, Type.INTEGER):
            raise _fail(
                c.line, f"{c.element}.{name} is {attr.type.value}, not an amount: it cannot be totalled"
            )


def _check_shown(
    elements: dict[str, Element],
    owner: dict[str, str],
    shown: dict[tuple[str, str], Shown],
    read_model: ReadModel,
    s: Shown,
) -> None:
    if s.element not in read_model.elements:
        raise _fail(s.line, f"{read_model.name} has no element {s.element} to show {s.name} on")
    element = elements[s.element]
    if any(a.name == s.name for a in element.attributes):
        raise _fail(s.line, f"{s.element} has an attribute {s.name} of its own; show it under another name")
    via = _attribute(element, s.via)
    if via is None:
        raise _fail(s.line, f"{s.element} has no attribute {s.via} to reach {s.name} through")
    if via.type is not Type.ID or via.references is None:
        raise _fail(s.line, f"{s.element}.{s.via} refers to no element: {s.name} is not another element's")
    reachable = (via.references, *via.alternatives)
    if not s.sources:
        raise _fail(s.line, f"{s.element}.{s.name} names no source")
    for source in s.sources:
        name, attribute = source_parts(source)
        if name == s.element:
            raise _fail(
                s.line, f"{source} is {s.element}'s own: a strategy serves another element's attributes"
            )
        if name not in elements:
            raise _fail(s.line, f"{source}: the model has no element {name}")
        if name not in reachable:
            raise _fail(
                s.line, f"{source}: {s.element}.{s.via} names a {' or '.join(reachable)}, not a {name}"
            )
        if name not in owner:
            raise _fail(s.line, f"{source}: {name} is in no read model, so no table holds it")
        own = _attribute(elements[name], attribute)
        further = shown.get((name, attribute))
        if own is None and further is None:
            raise _fail(s.line, f"{source}: {name} has no attribute {attribute}")
        if (
            s.strategy is not Strategy.JOINED
            and further is not None
            and further.strategy is not Strategy.COPIED
        ):
            raise _fail(
                s.line,
                f"{source} is shown on {name} {further.strategy.value} (at {further.line}): only a copied "
                f"attribute is in {name}'s table for a {s.strategy.value} read",
            )
    if s.strategy is Strategy.COMBINED and len(s.sources) != 1:
        raise _fail(s.line, f"{s.element}.{s.name} is combined: it reads one shared table, so one source")
    if s.searched and s.strategy is not Strategy.COPIED:
        raise _fail(
            s.line, f"{s.element}.{s.name} is searched: only a copied attribute has a column to index"
        )


def _check_no_cycle(shown: dict[tuple[str, str], Shown], s: Shown, path: tuple[str, ...]) -> None:
    here = f"{s.element}.{s.name}"
    if here in path:
        raise _fail(s.line, f"{here} is shown from itself: {' -> '.join((*path, here))}")
    for source in s.sources:
        further = shown.get(source_parts(source))
        if further is not None:
            _check_no_cycle(shown, further, (*path, here))


def _attribute(element: Element, name: str) -> Attr | None:
    return next((a for a in element.attributes if a.name == name), None)
