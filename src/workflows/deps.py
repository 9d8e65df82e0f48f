"""The workflows' dependencies for the HTTP layer: `projections`, the operators' projection operations,
and `operations`, their builds, rebuilds and moves."""

from __future__ import annotations

from litestar.di import Provide

from workflows.operations import ProjectionOperations
from workflows.running import OperatorWorkflows


def workflow_dependencies(
    projections: ProjectionOperations, operations: OperatorWorkflows
) -> dict[str, Provide]:
    return {
        "projections": Provide(lambda: projections, use_cache=True, sync_to_thread=False),
        "operations": Provide(lambda: operations, use_cache=True, sync_to_thread=False),
    }
