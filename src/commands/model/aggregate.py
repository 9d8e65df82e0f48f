"""Aggregates: self-contained business objects that handle commands and raise events.

Each element of the model is one aggregate class (`aggregate_class`), with its own stream. Its
state is a dict of attributes plus Status, changed only by the events' declared `Change`s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import msgspec

from commands.errors import BusinessRuleViolation
from commands.model.language import Change, Element
from commands.model.snapshots import state_shape
from commands.store.event_store import PendingEvent

if TYPE_CHECKING:
    from commands.model.model import Model


class StoredEvent(Protocol):
    """What replay needs of a stored event (RecordedEvent and CachedEvent both qualify)."""

    @property
    def stream_revision(self) -> int: ...

    @property
    def name(self) -> str: ...

    @property
    def payload(self) -> Mapping[str, Any]: ...


SNAPSHOT = "$snapshot"
"""The name a snapshot goes by in a history: its payload is the state at its revision."""


class Aggregate:
    """A consistency boundary with its own stream; `revision` is the last stored StreamRevision."""

    stream_type: ClassVar[str]
    snapshot_every: ClassVar[int | None] = None
    """Snapshots of its state every this many events (None: none)."""
    snapshot_shape: ClassVar[str] = ""
    """What its state is made of: a snapshot of another shape is not read."""

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        self.revision = 0

    def replay(self, history: Iterable[StoredEvent]) -> None:
        """Rebuild state from stored events."""
        raise NotImplementedError

    def pending_events(self) -> list[PendingEvent]:
        """Events raised since loading, as the store takes them."""
        raise NotImplementedError

    def snapshot(self) -> dict[str, Any]:
        """Its state with every event raised applied, as a snapshot stores it."""
        raise NotImplementedError

    @property
    def exists(self) -> bool:
        """Whether anything was ever stored or raised on this stream."""
        return self.revision > 0 or bool(self.pending_events())


class ModelAggregate(Aggregate):
    """An element's consistency boundary: state is a dict of attributes plus Status.

    Its state changes are the model's declared Changes, applied by one function
    (`apply_change`) both when an event is raised and when it is replayed, so
    deciding and replaying cannot drift apart.
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
        for attr, _ in decl.change.append:
            limit = self.element.attribute(attr).max_items
            held = len(self.state.get(attr) or ())
            if limit is not None and held >= limit:
                raise BusinessRuleViolation(f"{attr} holds at most {limit}; {self.stream_id} has {held}")
        apply_change(self.state, decl.change, wire)
        self._raised.append((name, wire))

    def replay(self, history: Iterable[StoredEvent]) -> None:
        for stored in history:
            if stored.name == SNAPSHOT:  # the state at its revision (a copy: changes replace values)
                self.state = dict(stored.payload)
            else:
                decl = self.model.event_decls[(self.element.name, stored.name)]
                apply_change(self.state, decl.change, stored.payload)
            self.revision = stored.stream_revision

    def pending_events(self) -> list[PendingEvent]:
        return [PendingEvent(name, payload) for name, payload in self._raised]

    def snapshot(self) -> dict[str, Any]:
        return dict(self.state)


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
        state[attr] = [*(state.get(attr) or ()), payload[source]]
    for attr in change.clear:
        state[attr] = None
    if change.clear_custom:
        state["Custom"] = {}
    if change.status is not None:
        state["Status"] = change.status


def aggregate_class(element: Element, model: Model) -> type[ModelAggregate]:
    attributes = {
        "element": element,
        "model": model,
        "stream_type": element.stream_type,
        "snapshot_every": element.snapshot_every,
        "snapshot_shape": state_shape(element) if element.snapshot_every else "",
    }
    return type(element.name, (ModelAggregate,), attributes)
