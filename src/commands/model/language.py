"""The model language: elements with attributes, commands and events, declared as data.

The ERP is one model (`commands.erp_model`); the platform is generic over it
(`commands.model.model.Model` derives everything else from the declarations here).
Hand-written code appears only as a command's `rule`, where a business rule needs it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from commands.model.aggregate import ModelAggregate
    from commands.model.model import Model
    from commands.model.wire import Command
    from commands.unit_of_work import UnitOfWork


class Kind(StrEnum):
    """The seed's element kinds."""

    ENTITY = "Entity"
    ROLE = "Role"
    AGREEMENT = "Agreement"
    BUSINESS_ACTIVITY = "BusinessActivity"
    OWN_ORGANISATION = "OwnOrganisation"
    WORKAREA = "Workarea"


class Type(StrEnum):
    """Attribute types, with their wire form."""

    STRING = "string"
    TEXT = "text"
    INTEGER = "integer"
    MONEY = "money"
    """A decimal string with at most two decimals, >= 0."""
    ID = "id"
    """A UUID: an element's id or a reference to another element."""
    DATE = "date"
    BOOLEAN = "boolean"
    RECORD = "record"
    """One record whose fields are `Attr.fields`."""
    RECORDS = "records"
    """A list of records whose fields are `Attr.fields`."""


@dataclass(frozen=True)
class Attr:
    """One attribute of an element, a command or a record."""

    name: str
    type: Type = Type.STRING
    required: bool = True
    max_length: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    fields: tuple[Attr, ...] = ()
    min_items: int | None = None
    max_items: int | None = None
    """For records: the most a list may hold (a command naming more is refused, 422; an event that
    would append one more to a full list too)."""
    references: str | None = None
    """For an id: the element it points to (a relation such as `party`)."""
    alternatives: tuple[str, ...] = ()
    """For an id: other elements it may point to instead (a party is a Person or an Organisation)."""
    searched: bool = False
    """Queries look elements up by it: its read-model column is indexed (per account)."""
    personal: bool = False
    """Personal data of the element (its data subject): stored in events sealed with the subject's
    own key, and erased by the element's generated `Erase<Element>` (`commands.model.personal`)."""

    @property
    def snake(self) -> str:
        return snake(self.name)


@dataclass(frozen=True)
class Change:
    """How an event changes its element's state (and read-model row)."""

    set: tuple[str, ...] = ()
    """Payload fields copied into the attributes of the same name."""
    copy: tuple[tuple[str, str], ...] = ()
    """(attribute, payload field): copied under another name."""
    status: str | None = None
    add: tuple[tuple[str, str], ...] = ()
    """(attribute, payload field): the attribute grows by the field's amount."""
    subtract: tuple[tuple[str, str], ...] = ()
    append: tuple[tuple[str, str], ...] = ()
    """(records attribute, payload field): the field's record is appended to the list."""
    clear: tuple[str, ...] = ()
    """Attributes that become empty (NULL): an erasure's personal data."""
    clear_custom: bool = False
    """The account's own attributes (`Custom`) become empty too: an erasure's."""
    creates: bool = False
    """The event starts the stream."""


Rule = Callable[["RuleContext"], Awaitable[None]]
"""Hand-written code for a command: may refuse, load other elements, raise their events, add payload."""


@dataclass
class RuleContext:
    """What a rule sees and may change."""

    command: Command
    uow: UnitOfWork
    element: ModelAggregate
    payload: dict[str, Any]
    model: Model


@dataclass(frozen=True)
class CommandDecl:
    """A command on an element: validated fields, the stream it targets, the event it raises."""

    name: str
    fields: tuple[Attr, ...]
    event: str
    key: str
    """The field holding the element's id (its stream)."""
    creates: bool = False
    when: tuple[str, ...] = ()
    """Statuses the element must be in (empty: any, once it exists)."""
    rule: Rule | None = None
    description: str = ""
    alternatives: tuple[str, ...] = ()
    """Other elements whose stream the key may name (ChangeAddress: a Person or an Organisation)."""
    erases: bool = False
    """It erases the element's personal data (generated: `commands.model.personal`)."""


@dataclass(frozen=True)
class Renamed:
    """A payload field renamed: events of the versions before call it `old`."""

    old: str
    new: str


@dataclass(frozen=True)
class Added:
    """A payload field added: events of the versions before lack it and read `default`."""

    name: str
    default: Any


VersionStep = tuple[Renamed | Added, ...]
"""What changed from one version of an event to the next, applied in order."""


@dataclass(frozen=True)
class Part:
    """One of the events a retired event is read as: `event` (an event of the same element), with
    `fields` taken from the retired payload (today's name: the retired field's name), in the shape
    of that event's `version` (later steps of its history then apply)."""

    event: str
    fields: Mapping[str, str] = field(default_factory=dict)
    version: int = 1


@dataclass(frozen=True)
class Retired:
    """An event no longer raised: `name` events stored at `version` are read as `parts`, in order."""

    name: str
    parts: tuple[Part, ...]
    version: int = 1


@dataclass(frozen=True)
class EventDecl:
    name: str
    fields: tuple[Attr, ...]
    change: Change
    history: tuple[VersionStep, ...] = ()
    """One entry per earlier version of the event: what changed from it to the next one
    (`commands.model.versions`). New events are stored at `version`."""

    @property
    def version(self) -> int:
        return len(self.history) + 1


@dataclass(frozen=True)
class Element:
    """One element type of the model: its attributes, commands and events."""

    name: str
    kind: Kind
    attributes: tuple[Attr, ...]
    commands: tuple[CommandDecl, ...] = ()
    events: tuple[EventDecl, ...] = ()
    internal_events: tuple[EventDecl, ...] = ()
    """Events only rules raise (e.g. a Customer's AmountReserved, raised by PlaceOrder)."""
    listed_by_status: bool = False
    """A list query pages through its elements of one status (e.g. open invoices), so its table
    gets an index on status in creation order."""
    retired: tuple[Retired, ...] = ()
    """Events no longer raised, and the events of today each is read as (`commands.model.versions`)."""
    snapshot_every: int | None = None
    """A snapshot of its state every this many events of its stream, so that loading a long stream
    reads the latest snapshot and the events after it (`commands.model.snapshots`)."""

    @property
    def stream_type(self) -> str:
        return self.name

    def stream_id(self, element_id: UUID) -> str:
        return f"{self.name}-{element_id}"

    def all_events(self) -> tuple[EventDecl, ...]:
        return self.events + self.internal_events

    @property
    def statuses(self) -> tuple[str, ...]:
        """Every status its events set, in the order they are declared: what its `Status` can be."""
        return tuple(dict.fromkeys(e.change.status for e in self.all_events() if e.change.status))

    def attribute(self, name: str) -> Attr:
        for attr in self.attributes:
            if attr.name == name:
                return attr
        raise KeyError(f"{self.name} has no attribute {name}")


_SNAKE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def snake(name: str) -> str:
    return _SNAKE.sub("_", name).lower()


def singular(name: str) -> str:
    return name[:-1] if name.endswith("s") else name
