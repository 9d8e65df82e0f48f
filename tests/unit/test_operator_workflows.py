"""GET /operations tells a rebuild's projection and account from its workflow id alone: the id
`start_rebuild` gives reads back, for one account and for all, whatever the projection's name."""

from __future__ import annotations

import uuid

import pytest

from core.deployment import Deployment
from workflows.starters import rebuild_of, rebuild_workflow_id

DEPLOYMENT = Deployment(uuid.UUID("0123456789abcdef0123456789abcdef"))


@pytest.mark.parametrize("projection", ["orders", "open_amounts"])
@pytest.mark.parametrize("account_id", [None, uuid.uuid4()])
def test_a_rebuild_id_reads_back(projection: str, account_id: uuid.UUID | None) -> None:
    workflow_id = rebuild_workflow_id(DEPLOYMENT, projection, account_id, uuid.uuid4().hex[:8])
    assert workflow_id.startswith("erp-0123456789ab-rebuild-")
    assert rebuild_of(DEPLOYMENT, workflow_id) == (projection, account_id)
