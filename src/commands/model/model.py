"""A model: a set of elements with everything the platform derives from them, built once.

From the declarations (`commands.model.language`) it derives the wire types of commands and events
(`commands.model.wire`: msgspec Structs, hence validation and OpenAPI), an aggregate class per
element whose state changes are the events' declared `Change`s (`commands.model.aggregate`), and
the upcasters that read older events' shapes as today's (`commands.model.versions`), and the
erasure of each element with personal attributes (`commands.model.personal`). The
handlers (`commands.handlers`) and the read-model tables (`queries.model_tables`) come from it too.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from commands.model.aggregate import ModelAggregate, aggregate_class
from commands.model.language import CommandDecl, Element, EventDecl
from commands.model.personal import erasable, personal_data
from commands.model.snapshots import check_snapshots
from commands.model.versions import upcasters_of
from commands.model.wire import Command, command_struct, event_struct


class Model:
    """A set of elements, with everything the platform derives from them, built once."""

    def __init__(self, elements: Sequence[Element]) -> None:
        elements = [erasable(e) for e in elements]
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
            self._check_retired(element)
            check_snapshots(element)
        self.upcasters = upcasters_of(
            [(d.name, d.history) for e in elements for d in e.all_events() if d.history],
            [gone for e in elements for gone in e.retired],
        )
        """How every reader reads events stored in an older shape (the declared versions)."""
        self.personal = personal_data(elements)
        """Which events' fields are personal (sealed with their subject's key) and which erase."""

    @staticmethod
    def _check_retired(element: Element) -> None:
        """A retired event's parts are events of its element, at versions they have had."""
        events = {d.name: d for d in element.all_events()}
        for gone in element.retired:
            if not gone.parts:
                raise ValueError(f"{element.name}'s retired {gone.name} is read as no event at all")
            for part in gone.parts:
                decl = events.get(part.event)
                if decl is None:
                    raise ValueError(
                        f"{element.name}'s retired {gone.name} is read as {part.event}, not one of its events"
                    )
                if not 1 <= part.version <= decl.version:
                    raise ValueError(f"{part.event} has no version {part.version} (it is at {decl.version})")

    @staticmethod
    def _element(elements: Sequence[Element], name: str) -> Element:
        for element in elements:
            if element.name == name:
                return element
        raise ValueError(f"no element named {name}")
