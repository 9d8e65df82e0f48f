"""A model: a set of elements with everything the platform derives from them, built once.

From the declarations (`commands.model.language`) it derives the wire types of commands and events
(`commands.model.wire`: msgspec Structs, hence validation and OpenAPI) and an aggregate class per
element whose state changes are the events' declared `Change`s (`commands.model.aggregate`). The
handlers (`commands.handlers`) and the read-model tables (`queries.model_tables`) come from it too.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from commands.model.aggregate import ModelAggregate, aggregate_class
from commands.model.language import CommandDecl, Element, EventDecl
from commands.model.wire import Command, command_struct, event_struct


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
