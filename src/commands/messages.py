"""Wire types shared by every command: the base Command struct and money validation."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import msgspec

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
