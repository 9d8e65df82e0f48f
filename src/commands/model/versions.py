"""Event versions, declared in the model beside the events they concern, and the upcasters built
from them.

Stored events never change (invariant 6), so when an event's shape changes, the model says how
its older shapes read today, and every reader (loading an aggregate, the projectors, rebuilds,
exports, retries of parked events) reads them so through `commands.store.feed`:

* `EventDecl.history`: one entry per earlier version of the event, each the changes that took it
  to the next one: `Renamed(old, new)` (a field renamed) and `Added(name, default)` (a field
  added: older events read `default`). Today's version is one past the last entry, and new events
  are stored at it.
* `Element.retired`: events no longer raised, each read as today's events (`Retired`, made of
  `Part`s): an event that did two things is split in two, which share its revision and
  SequenceNumber.

Example, the renamed field (OrderPlaced named its customer `Customer` in version 1)::

    EventDecl("OrderPlaced", fields, change, history=((Renamed("Customer", "CustomerName"),),))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from commands.model.language import Renamed, Retired, VersionStep
from commands.store.upcasting import Upcasters


def version_step(step: VersionStep) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """One version's changes as a function of the payload (the old payload left as it is)."""

    def upcast(payload: dict[str, Any]) -> dict[str, Any]:
        new = dict(payload)
        for change in step:
            if isinstance(change, Renamed):
                if change.old in new:
                    new[change.new] = new.pop(change.old)
            elif change.name not in new:
                new[change.name] = change.default
        return new

    return upcast


def splitter(retired: Retired) -> Callable[[dict[str, Any]], list[tuple[str, int, dict[str, Any]]]]:
    def split(payload: dict[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
        return [
            (
                part.event,
                part.version,
                {new: payload[old] for new, old in part.fields.items() if old in payload},
            )
            for part in retired.parts
        ]

    return split


def upcasters_of(
    events: Sequence[tuple[str, Sequence[VersionStep]]], retired: Sequence[Retired]
) -> Upcasters:
    """The upcasters the declarations make: each event's history, step by step, and each retired
    event's split. Raises ValueError for a declaration that contradicts another."""
    upcasters = Upcasters()
    for name, history in events:
        for version, step in enumerate(history, start=1):
            upcasters.register(name, version, _named(name, version_step(step)))
    for gone in retired:
        if any(name == gone.name for name, _ in events):
            raise ValueError(f"{gone.name} is declared as an event and as retired")
        upcasters.split(gone.name, gone.version, splitter(gone))
    return upcasters


def _named(
    name: str, step: Callable[[dict[str, Any]], dict[str, Any]]
) -> Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]:
    return lambda payload: (name, step(payload))
