"""Which commands exist: name -> wire type and handler. The API and OpenAPI are generated from it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from commands import handlers
from commands.aggregate import Aggregate
from commands.messages import Command
from commands.orders import CancelOrder, PlaceOrder
from commands.unit_of_work import UnitOfWork

Handler = Callable[[Any, UnitOfWork], Awaitable[Aggregate]]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A command the API accepts."""

    name: str
    message: type[Command]
    handler: Handler


COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec("PlaceOrder", PlaceOrder, handlers.place_order),
        CommandSpec("CancelOrder", CancelOrder, handlers.cancel_order),
    )
}
