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
from core.text import NO_NUL

MAX_MONEY = Decimal("1000000000000")


def check_money(value: Decimal, field: str) -> None:
    """Money is a finite decimal >= 0 with at most two decimals; raises ValueError otherwise."""
    if not value.is_finite() or value < 0 or value > MAX_MONEY:
        raise ValueError(f"{field} must be a decimal between 0 and {MAX_MONEY}, got {value}")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise ValueError(f"{field} has more than 2 decimals: {value}")


class Command(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="pascal"):
    """Base of every command body. `ExpectedRevision` pins the primary stream's revision."""

    expected_revision: Annotated[int, msgspec.Meta(ge=0)] | None = None


def python_type(attr: Attr, owner: str) -> Any:
    """The annotated Python type msgspec validates against."""
    base: Any
    if attr.type in (Type.STRING, Type.TEXT):
        limit = attr.max_length or (200 if attr.type is Type.STRING else 4000)
        base = Annotated[
            str, msgspec.Meta(min_length=1 if attr.required else 0, max_length=limit, pattern=NO_NUL)
        ]
    elif attr.type is Type.INTEGER:
        base = Annotated[int, msgspec.Meta(ge=attr.minimum, le=attr.maximum)]
    elif attr.type is Type.MONEY:
        base = Decimal
    elif attr.type is Type.ID:
        base = UUID
    elif attr.type is Type.DATE:
        base = date
    elif attr.type is Type.BOOLEAN:
        base = bool
    elif attr.type is Type.RECORD:
        base = record_struct(f"{owner}{attr.name}", attr.fields)
    else:
        record = record_struct(f"{owner}{singular(attr.name)}", attr.fields)
        items = msgspec.Meta(min_length=attr.min_items, max_length=attr.max_items)  # maxItems in OpenAPI
        base = Annotated[list[record], items]  # type: ignore[valid-type]
    return base if attr.required else base | None


def _post_init_for(attrs: Sequence[Attr]) -> Callable[[Any], None] | None:
    money = [a for a in attrs if a.type is Type.MONEY]
    if not money:
        return None

    def __post_init__(self: Any) -> None:
        for attr in money:
            value = getattr(self, attr.snake)
            if value is not None:
                check_money(value, attr.name)

    return __post_init__


def _struct_fields(owner: str, attrs: Sequence[Attr]) -> list[tuple[str, Any, Any]]:
    fields: list[tuple[str, Any, Any]] = []
    for attr in attrs:
        if attr.required:
            fields.append((attr.snake, python_type(attr, owner), msgspec.NODEFAULT))
        else:
            fields.append((attr.snake, python_type(attr, owner), None))
    return fields


def record_struct(name: str, attrs: Sequence[Attr]) -> type[msgspec.Struct]:
    namespace = {}
    post_init = _post_init_for(attrs)
    if post_init is not None:
        namespace["__post_init__"] = post_init
    return msgspec.defstruct(
        name,
        _struct_fields(name, attrs),
        kw_only=True,
        forbid_unknown_fields=True,
        rename="pascal",
        frozen=True,
        omit_defaults=True,
        namespace=namespace,
    )


CUSTOM_FIELD = ("custom", dict[str, Any] | None, None)
"""Every command and event carries the account's own attributes under `Custom`."""


def command_struct(name: str, attrs: Sequence[Attr]) -> type[Command]:
    namespace = {}
    post_init = _post_init_for(attrs)
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
    return msgspec.defstruct(
        name,
        [*_struct_fields(name, attrs), CUSTOM_FIELD],
        kw_only=True,
        rename="pascal",
        frozen=True,
        omit_defaults=True,
    )
