"""Command handlers, generated from the model: plain functions of (command, unit of work)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec

from commands.errors import BusinessRuleViolation, StreamNotFound
from commands.model import (
    ERASED,
    Aggregate,
    Command,
    CommandDecl,
    Element,
    Model,
    ModelAggregate,
    RuleContext,
    snake,
)
from commands.unit_of_work import UnitOfWork

Handler = Callable[[Any, UnitOfWork], Awaitable[Aggregate]]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A command the API accepts: its wire type and its handler."""

    name: str
    message: type[Command]
    handler: Handler
    element: str = ""
    """The element whose stream the command addresses (its customisations apply)."""
    description: str = ""
    creates: bool = False
    alternatives: tuple[str, ...] = ()


NOT_PAYLOAD = frozenset({"ExpectedRevision"})


async def load_element(
    model: Model, element: Element, decl: CommandDecl, element_id: UUID, uow: UnitOfWork
) -> ModelAggregate:
    """The element the command addresses (trying its alternatives when the key may name several)."""
    aggregate = await uow.get(model.aggregates[element.name], element.stream_id(element_id))
    for other in decl.alternatives:
        if aggregate.exists:
            break
        candidate = model.elements[other]
        found = await uow.get(model.aggregates[other], candidate.stream_id(element_id))
        if found.exists:
            aggregate = found
    return aggregate


def model_handler(model: Model, element: Element, decl: CommandDecl) -> Handler:
    """The generic handler: load, check existence and status, run the rule, raise the event."""
    key = snake(decl.key)

    async def handle(command: Command, uow: UnitOfWork) -> Aggregate:
        element_id: UUID = getattr(command, key)
        aggregate = await load_element(model, element, decl, element_id, uow)
        noun = aggregate.element.name
        if decl.creates and aggregate.exists:
            raise BusinessRuleViolation(f"{noun} {element_id} already exists")
        if not decl.creates and not aggregate.exists:
            names = " or ".join((element.name, *decl.alternatives))
            raise StreamNotFound(f"{names} {element_id} does not exist")
        if aggregate.status == ERASED:
            if decl.erases:
                return aggregate  # nothing more to erase: the service answers as the erasure did
            raise BusinessRuleViolation(f"{noun} {element_id} was erased; {decl.name} cannot apply to it")
        if decl.alternatives and uow.check_custom is not None:
            # Only now is it known which element the key names (the others are checked up front).
            await uow.check_custom(noun, getattr(command, "custom", None), decl.creates)
        if decl.when and aggregate.status not in decl.when:
            raise BusinessRuleViolation(
                f"{noun} {element_id} is {aggregate.status}; {decl.name} needs it to be "
                f"{' or '.join(decl.when)}"
            )
        payload = {
            name: value
            for name, value in msgspec.to_builtins(command).items()
            if name not in NOT_PAYLOAD and value is not None
        }
        if decl.erases:
            payload = {decl.key: payload[decl.key]}  # the erasure, without data of any kind
        if decl.rule is not None:
            await decl.rule(RuleContext(command, uow, aggregate, payload, model))
        aggregate.raise_event(decl.event, payload)
        return aggregate

    handle.__name__ = snake(decl.name)
    return handle


def command_specs(model: Model) -> dict[str, CommandSpec]:
    """Every command of the model, ready for the pipeline and the API."""
    return {
        name: CommandSpec(
            name,
            model.command_types[name],
            model_handler(model, element, decl),
            element.name,
            decl.description or f"{decl.name}: raises {decl.event} on a {element.name} ({element.kind}).",
            decl.creates,
            decl.alternatives,
        )
        for name, (element, decl) in model.command_decls.items()
    }
