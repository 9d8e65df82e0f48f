"""The projections this system maintains."""

from __future__ import annotations

from queries.orders import OrdersProjection
from queries.projection import Projection

PROJECTIONS: dict[str, Projection] = {p.name: p for p in (OrdersProjection(),)}
