"""The workflows' dependencies for the HTTP layer: `projections`, the operators' projection operations."""

from __future__ import annotations

from litestar.di import Provide

from workflows.operations import ProjectionOperations


def workflow_dependencies(projections: ProjectionOperations) -> dict[str, Provide]:
    return {"projections": Provide(lambda: projections, use_cache=True, sync_to_thread=False)}
