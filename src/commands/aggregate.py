"""Aggregates: self-contained business objects that handle commands and raise events.

Each state change is declared once, as a method decorated with `@event` whose
single argument is the event it applies. Command methods raise events only by
calling those methods, so deciding and replaying share one code path and
cannot drift apart::

    class Order(Aggregate):
        stream_type = "Order"

        def place(self, customer_name: str) -> None:      # a command: decides
            if self.revision:
                raise BusinessRuleViolation("already placed")
            self._placed(OrderPlaced(customer_name=customer_name))

        @event
        def _placed(self, e: OrderPlaced) -> None:        # an event: applies
            self.customer_name = e.customer_name
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Protocol, TypeVar, get_type_hints

import msgspec

from commands.event_store import PendingEvent


class StoredEvent(Protocol):
    """What replay needs of a stored event (RecordedEvent and CachedEvent both qualify)."""

    @property
    def stream_revision(self) -> int: ...

    @property
    def name(self) -> str: ...

    @property
    def payload(self) -> Mapping[str, Any]: ...


class DomainEvent(msgspec.Struct, frozen=True, kw_only=True, rename="pascal"):
    """Base of every event payload; its class name is the stored PayloadItemName."""

    @classmethod
    def event_name(cls) -> str:
        return cls.__name__


A = TypeVar("A", bound="Aggregate")
E = TypeVar("E", bound=DomainEvent)

_EVENT_MARK = "__erp_applies__"


def event(apply: Callable[[A, E], None]) -> Callable[[A, E], None]:
    """Declare `apply` as the state change for the event type its argument is annotated with.

    Calling the decorated method applies the event and records it as pending;
    replaying a stored event runs the same `apply`.
    """
    hints = get_type_hints(apply)
    parameters = list(inspect.signature(apply).parameters)
    event_type = hints.get(parameters[1]) if len(parameters) == 2 else None
    if not (isinstance(event_type, type) and issubclass(event_type, DomainEvent)):
        raise TypeError(f"@event method {apply.__qualname__} must take one DomainEvent argument")

    @functools.wraps(apply)
    def trigger(self: A, raised: E) -> None:
        apply(self, raised)
        self._pending.append(raised)

    setattr(trigger, _EVENT_MARK, (event_type, apply))
    return trigger


class Aggregate:
    """A consistency boundary with its own stream; `revision` is the last stored StreamRevision."""

    stream_type: ClassVar[str]
    _appliers: ClassVar[dict[str, tuple[type[DomainEvent], Callable[[Any, Any], None]]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        appliers = dict(getattr(cls, "_appliers", {}))
        for member in vars(cls).values():
            mark = getattr(member, _EVENT_MARK, None)
            if mark is not None:
                event_type, apply = mark
                appliers[event_type.event_name()] = (event_type, apply)
        cls._appliers = appliers

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        self.revision = 0
        self._pending: list[DomainEvent] = []

    @classmethod
    def event_types(cls) -> list[type[DomainEvent]]:
        """Every event this aggregate can raise."""
        return [event_type for event_type, _ in cls._appliers.values()]

    def replay(self, history: Iterable[StoredEvent]) -> None:
        """Rebuild state from stored events."""
        for recorded in history:
            event_type, apply = self._appliers[recorded.name]
            apply(self, msgspec.convert(recorded.payload, event_type))
            self.revision = recorded.stream_revision

    @property
    def exists(self) -> bool:
        """Whether anything was ever stored or raised on this stream."""
        return self.revision > 0 or bool(self._pending)

    def pending_events(self) -> list[PendingEvent]:
        """Events raised since loading, as the store takes them."""
        return [
            PendingEvent(name=raised.event_name(), payload=msgspec.to_builtins(raised))
            for raised in self._pending
        ]
