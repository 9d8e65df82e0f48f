"""The model language (declarations), the aggregates and wire types derived from it, and `Model`."""

from commands.model.aggregate import Aggregate, ModelAggregate, StoredEvent, apply_change
from commands.model.language import (
    Attr,
    Change,
    CommandDecl,
    Element,
    EventDecl,
    Kind,
    Rule,
    RuleContext,
    Type,
    singular,
    snake,
)
from commands.model.model import Model
from commands.model.wire import MAX_MONEY, Command, check_money

__all__ = [
    "MAX_MONEY",
    "Aggregate",
    "Attr",
    "Change",
    "Command",
    "CommandDecl",
    "Element",
    "EventDecl",
    "Kind",
    "Model",
    "ModelAggregate",
    "Rule",
    "RuleContext",
    "StoredEvent",
    "Type",
    "apply_change",
    "check_money",
    "singular",
    "snake",
]
