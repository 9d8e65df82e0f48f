"""Upcasters: stored events never change, so old payload shapes are converted on load.

Each event is stored with its schema version, the version its name is at when it is appended
(`Upcasters.version`); on load every step registered from that version on applies, in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Upcaster = Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]
"""Turns one stored payload of version N into (event name, payload) of version N + 1."""


class Upcasters:
    """A chain of upcasters per (event name, schema version)."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}
        self._versions: dict[str, int] = {}

    def register(self, name: str, from_version: int, step: Upcaster, *, to: str | None = None) -> None:
        """Convert `name` payloads stored at `from_version` one version up.

        A step that renames the event names its new name as `to`: events appended under the new
        name are then stored at `from_version + 1` or later, where the chain from the old name
        arrives, so that a later step for the new name applies to both.
        """
        key = (name, from_version)
        if key in self._steps:
            raise ValueError(f"an upcaster for {name} v{from_version} is already registered")
        self._steps[key] = step
        for reached in {name, to or name}:
            self._versions[reached] = max(self._versions.get(reached, 1), from_version + 1)

    def version(self, name: str) -> int:
        """The schema version new `name` events are stored at: no registered step applies to it.

        1 for a name no step concerns; otherwise one past the last step registered for the name
        or declared (`to`) to rename an event to it.
        """
        return self._versions.get(name, 1)

    def upcast(self, name: str, version: int, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Apply every registered step from `version` upward."""
        while (step := self._steps.get((name, version))) is not None:
            name, payload = step(payload)
            version += 1
        return name, payload
