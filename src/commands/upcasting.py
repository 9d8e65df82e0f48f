"""Upcasters: stored events never change, so old payload shapes are converted on load."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Upcaster = Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]
"""Turns one stored payload of version N into (event name, payload) of version N + 1."""


class Upcasters:
    """A chain of upcasters per (event name, schema version)."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def register(self, name: str, from_version: int, step: Upcaster) -> None:
        """Convert `name` payloads stored at `from_version` one version up."""
        key = (name, from_version)
        if key in self._steps:
            raise ValueError(f"an upcaster for {name} v{from_version} is already registered")
        self._steps[key] = step

    def upcast(self, name: str, version: int, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Apply every registered step from `version` upward."""
        while (step := self._steps.get((name, version))) is not None:
            name, payload = step(payload)
            version += 1
        return name, payload
