"""A deployment's identity: what keeps two deployments apart on one Temporal server.

Two stacks that join one Temporal server (two `make run`s with different databases, staging and
production on one Temporal cluster) must never share a task queue or a workflow id: a worker of one
would project another's read models, and that one's would stall. Every deployment has an id, made
once when its catalog database is first migrated (migration 0011), and every workflow id, and the
default task queue, start with its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID


@dataclass(frozen=True, slots=True)
class Deployment:
    """One deployment: its catalog database's id."""

    id: UUID

    @property
    def name(self) -> str:
        """`erp-` and the id's first 12 hex digits: the default task queue, and every workflow id's start."""
        return f"erp-{self.id.hex[:12]}"

    def workflow_id(self, *parts: str) -> str:
        """A workflow id of this deployment's own: `erp-<id>-projector-orders-main`."""
        return "-".join((self.name, *parts))

    def owns(self, workflow_id: str) -> bool:
        return workflow_id.startswith(self.name + "-")


class ForeignDeployment(Exception):
    """A worker met work, or fellow workers, of another deployment."""
