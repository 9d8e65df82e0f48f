"""The model language: elements with attributes, commands and events, declared as data.

The ERP is one model (`commands.erp_model`); the platform is generic over it.
From a `Model` it derives the wire types of commands and events (msgspec
Structs, hence validation and OpenAPI), an aggregate class per element whose
state changes are the events' declared `Change`s, the command handlers, and
the read-model tables (`queries.model_tables`). Hand-written code appears only
as a command's `rule`, where a business rule needs it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import msgspec

from commands.aggregate import Aggregate, StoredEvent
from commands.event_store import PendingEvent
from commands.messages import Command, check_money
from erp.text import NO_NUL

if TYPE_CHECKING:
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
    references: str | None = None
    """For an id: the element it points to (a relation such as `party`)."""
    searched: bool = False
    """Queries look elements up by it: its read-model column is indexed (per account)."""

    def python_type(self, owner: str) -> Any:
        """The annotated Python type msgspec validates against."""
        base: Any
        if self.type in (Type.STRING, Type.TEXT):
            limit = self.max_length or (200 if self.type is Type.STRING else 4000)
            base = Annotated[
                str, msgspec.Meta(min_length=1 if self.required else 0, max_length=limit, pattern=NO_NUL)
            ]
        elif self.type is Type.INTEGER:
            base = Annotated[int, msgspec.Meta(ge=self.minimum, le=self.maximum)]
        elif self.type is Type.MONEY:
            base = Decimal
        elif self.type is Type.ID:
            base = UUID
        elif self.type is Type.DATE:
            base = date
        elif self.type is Type.BOOLEAN:
            base = bool
        elif self.type is Type.RECORD:
            base = record_struct(f"{owner}{self.name}", self.fields)
        else:
            record = record_struct(f"{owner}{singular(self.name)}", self.fields)
            base = Annotated[list[record], msgspec.Meta(min_length=self.min_items)]  # type: ignore[valid-type]
        return base if self.required else base | None

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


@dataclass(frozen=True)
class EventDecl:
    name: str
    fields: tuple[Attr, ...]
    change: Change


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

    @property
    def stream_type(self) -> str:
        return self.name

    def stream_id(self, element_id: UUID) -> str:
        return f"{self.name}-{element_id}"

    def all_events(self) -> tuple[EventDecl, ...]:
        return self.events + self.internal_events

    def attribute(self, name: str) -> Attr:
        for attr in self.attributes:
            if attr.name == name:
                return attr
        raise KeyError(f"{self.name} has no attribute {name}")


class Model:
    """A set of elements, with everything the platform derives from them, built once."""

    def __init__(self, elements: Sequence[Element]) -> None:
        self.elements = {e.name: e for e in elements}
        self.command_types: dict[str, type[Command]] = {}
        self.command_decls: dict[str, tuple[Element, CommandDecl]] = {}
        self.event_types: dict[tuple[str, str], type[msgspec.Struct]] = {}
        self.event_decls: dict[tuple[str, str], EventDecl] = {}
        self.aggregates: dict[str, type[ModelAggregate]] = {}
        for element in elements:
            for decl in element.all_events():
                key = (element.name, decl.name)
                if key in self.event_decls:
                    raise ValueError(f"{element.name} declares {decl.name} twice")
                self.event_decls[key] = decl
                self.event_types[key] = event_struct(f"{element.name}{decl.name}", decl.fields)
            for command in element.commands:
                if command.name in self.command_decls:
                    raise ValueError(f"command {command.name} is declared twice")
                for target in (element.name, *command.alternatives):
                    if command.event not in {e.name for e in self._element(elements, target).events}:
                        raise ValueError(f"{command.name} raises {command.event}, not an event of {target}")
                self.command_decls[command.name] = (element, command)
                self.command_types[command.name] = command_struct(command.name, command.fields)
            self.aggregates[element.name] = aggregate_class(element, self)

    @staticmethod
    def _element(elements: Sequence[Element], name: str) -> Element:
        for element in elements:
            if element.name == name:
                return element
        raise ValueError(f"no element named {name}")

    @property
    def attribute_count(self) -> int:
        return sum(len(e.attributes) for e in self.elements.values())


# --- the element aggregate -------------------------------------------------


class ModelAggregate(Aggregate):
    """An element's consistency boundary: state is a dict of attributes plus Status.

    Its appliers come from the model's declared Changes instead of `@event`
    methods, so deciding and replaying still share one code path (`apply_change`).
    """

    element: Element
    model: Model

    def __init__(self, stream_id: str) -> None:
        super().__init__(stream_id)
        self.state: dict[str, Any] = {"Status": None}
        self._raised: list[tuple[str, dict[str, Any]]] = []

    @property
    def exists(self) -> bool:
        return self.revision > 0 or bool(self._raised)

    @property
    def status(self) -> str | None:
        status: str | None = self.state.get("Status")
        return status

    def raise_event(self, name: str, payload: Mapping[str, Any]) -> None:
        """Validate the payload against the event's type, apply it and record it."""
        key = (self.element.name, name)
        decl = self.model.event_decls.get(key)
        if decl is None:
            raise ValueError(f"{name} is not an event of {self.element.name}")
        typed = msgspec.convert(dict(payload), self.model.event_types[key], str_keys=True)
        wire = msgspec.to_builtins(typed)
        apply_change(self.state, decl.change, wire)
        self._raised.append((name, wire))

    def replay(self, history: Iterable[StoredEvent]) -> None:
        for stored in history:
            decl = self.model.event_decls[(self.element.name, stored.name)]
            apply_change(self.state, decl.change, stored.payload)
            self.revision = stored.stream_revision

    def pending_events(self) -> list[PendingEvent]:
        return [PendingEvent(name, payload) for name, payload in self._raised]


def apply_change(state: dict[str, Any], change: Change, payload: Mapping[str, Any]) -> None:
    """The one place where an event's declared Change alters element state."""
    for name in change.set:
        if name in payload:
            state[name] = payload[name]
    for attr, source in change.copy:
        if source in payload:
            state[attr] = payload[source]
    if payload.get("Custom"):
        state["Custom"] = {**state.get("Custom", {}), **payload["Custom"]}
    for attr, source in change.add:
        state[attr] = str(Decimal(state.get(attr) or 0) + Decimal(payload[source]))
    for attr, source in change.subtract:
        state[attr] = str(Decimal(state.get(attr) or 0) - Decimal(payload[source]))
    for attr, source in change.append:
        state[attr] = [*state.get(attr, []), payload[source]]
    if change.status is not None:
        state["Status"] = change.status


def aggregate_class(element: Element, model: Model) -> type[ModelAggregate]:
    attributes = {"element": element, "model": model, "stream_type": element.stream_type}
    return type(element.name, (ModelAggregate,), attributes)


# --- wire types ------------------------------------------------------------


def _post_init_for(attrs: Sequence[Attr]) -> Callable[[Any], None] | None:
    money = [a for a in attrs if a.type is Type.MONEY]
    if not money:
        return None

    def __post_init__(self: Any) -> None:
        for attr in money:
            value = getattr(self, attr.snake)
            if value is not None:
                check_money(value, attr.name)

    return __post_init__


def _struct_fields(owner: str, attrs: Sequence[Attr]) -> list[tuple[str, Any, Any]]:
    fields: list[tuple[str, Any, Any]] = []
    for attr in attrs:
        if attr.required:
            fields.append((attr.snake, attr.python_type(owner), msgspec.NODEFAULT))
        else:
            fields.append((attr.snake, attr.python_type(owner), None))
    return fields


def record_struct(name: str, attrs: Sequence[Attr]) -> type[msgspec.Struct]:
    namespace = {}
    post_init = _post_init_for(attrs)
    if post_init is not None:
        namespace["__post_init__"] = post_init
    return msgspec.defstruct(
        name,
        _struct_fields(name, attrs),
        kw_only=True,
        forbid_unknown_fields=True,
        rename="pascal",
        frozen=True,
        omit_defaults=True,
        namespace=namespace,
    )


CUSTOM_FIELD = ("custom", dict[str, Any] | None, None)
"""Every command and event carries the account's own attributes under `Custom`."""


def command_struct(name: str, attrs: Sequence[Attr]) -> type[Command]:
    namespace = {}
    post_init = _post_init_for(attrs)
    if post_init is not None:
        namespace["__post_init__"] = post_init
    struct = msgspec.defstruct(
        name,
        [*_struct_fields(name, attrs), CUSTOM_FIELD],
        bases=(Command,),
        kw_only=True,
        forbid_unknown_fields=True,
        rename="pascal",
        namespace=namespace,
    )
    return struct  # type: ignore[return-value]


def event_struct(name: str, attrs: Sequence[Attr]) -> type[msgspec.Struct]:
    return msgspec.defstruct(
        name,
        [*_struct_fields(name, attrs), CUSTOM_FIELD],
        kw_only=True,
        rename="pascal",
        frozen=True,
        omit_defaults=True,
    )


_SNAKE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def snake(name: str) -> str:
    return _SNAKE.sub("_", name).lower()


def singular(name: str) -> str:
    return name[:-1] if name.endswith("s") else name
