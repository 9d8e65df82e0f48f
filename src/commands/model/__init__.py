"""The model language (declarations), the aggregates and wire types derived from it, and `Model`."""

from commands.model.aggregate import SNAPSHOT, Aggregate, ModelAggregate, StoredEvent, apply_change
from commands.model.language import (
    Added,
    Attr,
    Change,
    CommandDecl,
    Element,
    EventDecl,
    Kind,
    Part,
    Renamed,
    Retired,
    Rule,
    RuleContext,
    Type,
    singular,
    snake,
)
from commands.model.model import Model
from commands.model.personal import ERASED
from commands.model.values import (
    MAX_MONEY,
    MONEY_PATTERN,
    Money,
    money_text,
    parse_date,
    parse_money,
    read_money,
)
from commands.model.wire import Command

__all__ = [
    "ERASED",
    "MAX_MONEY",
    "MONEY_PATTERN",
    "SNAPSHOT",
    "Added",
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
    "Money",
    "Part",
    "Renamed",
    "Retired",
    "Rule",
    "RuleContext",
    "StoredEvent",
    "Type",
    "apply_change",
    "money_text",
    "parse_date",
    "parse_money",
    "read_money",
    "singular",
    "snake",
]
