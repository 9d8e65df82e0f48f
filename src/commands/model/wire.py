"""The wire types: every command's and event's msgspec Struct, derived from the model's declarations.

msgspec validates against them (the strict parser), and their schemas are the OpenAPI document's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

import msgspec

from commands.model.language import Attr, Type, singular
from commands.model.values import MONEY_RULE, MoneyIn, normal_money, parse_money
from core.text import NO_NUL


class Command(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="pascal"):
    """Base of every command body. `ExpectedRevision` pins the primary stream's revision."""

    expected_revision: Annotated[int, msgspec.Meta(ge=0)] | None = None


def python_type(attr: Attr, owner: str, strict: bool = True) -> Any:
    """The annotated Python type msgspec validates against (`strict`: a command's, which the
    wire fills; an event's takes money as an older version stored it too)."""
    base: Any
    if attr.type in (Type.STRING, Type.TEXT):
        limit = attr.max_length or (200 if attr.type is Type.STRING else 4000)
        base = Annotated[
            str, msgspec.Meta(min_length=1 if attr.required else 0, max_length=limit, pattern=NO_NUL)
        ]
    elif attr.type is Type.INTEGER:
        base = Annotated[int, msgspec.Meta(ge=attr.minimum, le=attr.maximum)]
    elif attr.type is Type.MONEY:
        base = MoneyIn if strict else str  # a Decimal once decoded: see _post_init_for
    elif attr.type is Type.ID:
        base = UUID
    elif attr.type is Type.DATE:
        base = date
    elif attr.type is Type.BOOLEAN:
        base = bool
    elif attr.type is Type.RECORD:
        base = record_struct(f"{owner}{attr.name}", attr.fields, strict)
    else:
        record = record_struct(f"{owner}{singular(attr.name)}", attr.fields, strict)
        items = msgspec.Meta(min_length=attr.min_items, max_length=attr.max_items)  # maxItems in OpenAPI
        base = Annotated[list[record], items]  # type: ignore[valid-type]
    return base if attr.required else base | None


def money_value(value: Any, field: str, strict: bool = True) -> Decimal | str:
    """A money attribute's value. `strict`: the wire grammar, the amount as sent, as a Decimal (a
    Decimal built in Python is held to it too); otherwise any amount an older version stored, if it
    is in range, as its wire text in cents (`"10.50"`)."""
    if not strict:
        if isinstance(value, Decimal):
            value = format(value, "f")
        try:
            text = normal_money(value)
        except ValueError as error:
            raise ValueError(f"{field}: {error}") from None
        if text.startswith("-"):
            parse_money(text, field)  # an event's amount is never below 0: this raises, naming the field
        return text
    if isinstance(value, Decimal):
        value = format(value, "f")
    return parse_money(value, field)


def _post_init_for(attrs: Sequence[Attr], strict: bool) -> Callable[[Any], None] | None:
    """Money arrives as text and is kept as a Decimal. A command keeps the amount as sent (so a
    request's hash is what it was before the grammar was strict, for retries across that change); an
    event keeps its text in cents, so that it is stored with two decimals ("10.00")."""
    money = [(a.snake, a.name) for a in attrs if a.type is Type.MONEY]
    if not money:
        return None

    def __post_init__(self: Any) -> None:
        for snake, name in money:
            value = getattr(self, snake)
            if value is not None:
                msgspec.structs.force_setattr(self, snake, money_value(value, name, strict))

    return __post_init__


def _struct_fields(owner: str, attrs: Sequence[Attr], strict: bool = True) -> list[tuple[str, Any, Any]]:
    fields: list[tuple[str, Any, Any]] = []
    for attr in attrs:
        if attr.required:
            fields.append((attr.snake, python_type(attr, owner, strict), msgspec.NODEFAULT))
        else:
            fields.append((attr.snake, python_type(attr, owner, strict), None))
    return fields


def record_struct(name: str, attrs: Sequence[Attr], strict: bool = True) -> type[msgspec.Struct]:
    namespace = {}
    post_init = _post_init_for(attrs, strict)
    if post_init is not None:
        namespace["__post_init__"] = post_init
    return msgspec.defstruct(
        name,
        _struct_fields(name, attrs, strict),
        kw_only=True,
        forbid_unknown_fields=True,
        rename="pascal",
        frozen=True,
        omit_defaults=True,
        namespace=namespace,
    )


CUSTOM_DESCRIPTION = (
    "The account's own attributes (GET /customisations), by name: a string, an integer, "
    f"true or false, money ({MONEY_RULE}; answered with two decimals) or a date (YYYY-MM-DD)."
)
CUSTOM = Annotated[dict[str, Any], msgspec.Meta(description=CUSTOM_DESCRIPTION)]
CUSTOM_FIELD = ("custom", CUSTOM | None, None)
"""Every command and event carries the account's own attributes under `Custom`."""


def command_struct(name: str, attrs: Sequence[Attr]) -> type[Command]:
    namespace = {}
    post_init = _post_init_for(attrs, strict=True)
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
    """An event's payload type: what rules raise is checked against it and stored in its encoding
    (money with two decimals), and a value that came from an older event is still taken."""
    namespace = {}
    post_init = _post_init_for(attrs, strict=False)
    if post_init is not None:
        namespace["__post_init__"] = post_init
    return msgspec.defstruct(
        name,
        [*_struct_fields(name, attrs, strict=False), CUSTOM_FIELD],
        kw_only=True,
        rename="pascal",
        frozen=True,
        omit_defaults=True,
        namespace=namespace,
    )
