"""The value grammars of the wire: money and dates, strict where they come in, normal where they go out.

Money is a JSON string of ASCII digits with at most two decimals, from 0 to `MAX_MONEY`
(`"10"`, `"10.5"`, `"10.50"`): no sign, exponent, underscore, space, other digits or JSON number.
Inside, it is a `Decimal` in cents; outside, always two decimals (`"10.00"`). What was stored before
the grammar was strict (`"1E+3"`, `"-0"`) is still read (`read_money`), and written out normalised.

A date is an ISO 8601 calendar date, `YYYY-MM-DD`, and nothing else of ISO 8601.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import msgspec

MAX_MONEY = Decimal("1000000000000")
CENT = Decimal("0.01")

MONEY_PATTERN = r"^0*([0-9]{1,12}(\.[0-9]{1,2})?|1000000000000(\.0{1,2})?)$"
"""Exactly the amounts accepted, range included (the OpenAPI document's pattern)."""
_MONEY = re.compile(MONEY_PATTERN[1:-1])  # fullmatch: Python's `$` would let a final newline through
_NORMAL = re.compile(r"(?:0|[1-9][0-9]{0,11})\.[0-9]{2}")
"""Money already in its wire form, below MAX_MONEY and not negative: kept as it is, with no Decimal
built (a thousand-line order holds two thousand amounts)."""
MONEY_RULE = f'a string of digits with at most 2 decimals, from 0 to {MAX_MONEY}, such as "10.00"'

_MONEY_DESCRIPTION = f"An amount of money: {MONEY_RULE}. Answers always carry two decimals."
Money = Annotated[
    str, msgspec.Meta(pattern=MONEY_PATTERN, description=_MONEY_DESCRIPTION, examples=["10.00"])
]
"""Money in answers (query results)."""
MoneyIn = Annotated[
    str,
    msgspec.Meta(
        description=_MONEY_DESCRIPTION,
        examples=["10.00"],
        extra_json_schema={"pattern": MONEY_PATTERN},
    ),
]
"""Money in commands: the same schema, but `parse_money` checks the pattern (see `commands.model.wire`),
so that a refusal says what money looks like rather than quoting the pattern."""

DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_DATE = re.compile(DATE_PATTERN[1:-1])


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def parse_money(value: Any, field: str) -> Decimal:
    """Money as the wire must carry it, the amount as sent (`"10.5"`: `Decimal("10.5")`; `money_text`
    writes it `"10.50"`); ValueError naming `field` for anything else."""
    if not isinstance(value, str) or _MONEY.fullmatch(value) is None:
        raise ValueError(f"{field} must be an amount of money, {MONEY_RULE}; got {_shown(value)}")
    return Decimal(value)


def normal_money(value: Any) -> str:
    """`money_text(read_money(value))`, quickly when `value` is already in the wire's form or in the
    strict grammar commands are held to; ValueError as `read_money`."""
    if type(value) is str:
        if _NORMAL.fullmatch(value) is not None:
            return value
        if _MONEY.fullmatch(value) is not None:
            return f"{Decimal(value):.2f}"
    return money_text(read_money(value))


def read_money(value: Any) -> Decimal:
    """Money as stored, in cents: today's text and whatever an older version let through
    (`"1E+3"`, `"-0"`, a JSON number). ValueError if it is not a finite amount in range."""
    try:
        amount = Decimal(value if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise ValueError(f"not an amount of money: {_shown(value)}") from None
    if not amount.is_finite() or not -MAX_MONEY <= amount <= MAX_MONEY:
        raise ValueError(f"not an amount of money: {_shown(value)}")
    amount = amount.quantize(CENT)
    return amount.copy_abs() if amount.is_zero() else amount


def money_text(value: Decimal | str) -> str:
    """The wire form of an amount: two decimals, never an exponent (`"10.00"`)."""
    if type(value) is str and _NORMAL.fullmatch(value) is not None:
        return value
    amount = value if isinstance(value, Decimal) else read_money(value)
    if amount.as_tuple().exponent != -2 or amount.is_zero():
        amount = read_money(amount)
    return str(amount)


def parse_date(value: Any, field: str) -> date:
    """A calendar date `YYYY-MM-DD`; ValueError naming `field` for anything else (`20240229`,
    `2024-W01-1`, `2024-02-30`)."""
    if isinstance(value, str) and _DATE.fullmatch(value) is not None:
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{field} must be a date, YYYY-MM-DD; got {_shown(value)}")
