"""The projections this system maintains: named read models over groups of the model's elements."""

from __future__ import annotations

from commands.erp_model import ERP
from queries import customer_names
from queries.model_projection import ModelProjection

PROJECTIONS: dict[str, ModelProjection] = {
    p.name: p
    for p in (
        ModelProjection("orders", ERP, ["Order"]),
        ModelProjection(
            "customers",
            ERP,
            ["Customer", "Person", "Organisation", "OwnOrganisation", "Workarea"],
            extra_ddl=customer_names.ddl,
        ),
        ModelProjection("activities", ERP, ["Delivery", "Invoice"]),
    )
}
