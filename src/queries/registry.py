"""The projections this system maintains: the ERP's read models (`commands.erp_model.read_models`)."""

from __future__ import annotations

from commands.erp_model import CHAINED as CHAINED_DECLARED
from commands.erp_model import ERP, READ_MODELS
from queries.chained import ChainedProjection
from queries.model_projection import ModelProjection
from queries.shown import Shows

SHOWS = Shows(ERP, READ_MODELS)
"""What each read model shows of other elements, and how (`queries.shown`)."""
CHAINED: dict[str, ChainedProjection] = {c.name: ChainedProjection(ERP, c) for c in CHAINED_DECLARED}
"""The read models fed by another one's changes (`queries.chained`)."""
PROJECTIONS: dict[str, ModelProjection] = {
    r.name: ModelProjection(
        r.name, ERP, r.elements, shows=SHOWS, feeds=tuple(c for c in CHAINED.values() if c.fed_by == r.name)
    )
    for r in READ_MODELS
}
"""The read models fed by events."""
WAITABLE: dict[str, ModelProjection | ChainedProjection] = {**PROJECTIONS, **CHAINED}
"""Every read model a query may wait on (ConsistentWith)."""
