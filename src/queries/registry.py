"""The projections this system maintains: named read models over groups of the model's elements."""

from __future__ import annotations

from commands.erp_model import ERP
from queries.model_projection import ModelProjection
from queries.projection import Projection

PROJECTIONS: dict[str, Projection] = {
    p.name: p
    for p in (
        ModelProjection("orders", ERP, ["Order"]),
        ModelProjection(
            "customers", ERP, ["Customer", "Person", "Organisation", "OwnOrganisation", "Workarea"]
        ),
        ModelProjection("activities", ERP, ["Delivery", "Invoice"]),
    )
}
