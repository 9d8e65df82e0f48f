"""Upcasters: stored events never change, so old payload shapes are converted on load.

Each event is stored with its schema version, the version its name is at when it is appended
(`Upcasters.version`); on load every step registered from that version on applies, in order. A
step turns one payload into the next version's (`register`), or one stored event into several
(`split`), each of which goes on through its own event's steps. The model declares its events'
versions beside them (`commands.model.versions` builds its Upcasters).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Upcaster = Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]
"""Turns one stored payload of version N into (event name, payload) of version N + 1."""
Splitter = Callable[[dict[str, Any]], list[tuple[str, int, dict[str, Any]]]]
"""Turns one stored payload into several events: (event name, the version of its shape, payload)."""


class Upcasters:
    """A chain of upcasters per (event name, schema version)."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}
        self._splits: dict[tuple[str, int], Splitter] = {}
        self._versions: dict[str, int] = {}

    def register(self, name: str, from_version: int, step: Upcaster, *, to: str | None = None) -> None:
        """Convert `name` payloads stored at `from_version` one version up.

        A step that renames the event names its new name as `to`: events appended under the new
        name are then stored at `from_version + 1` or later, where the chain from the old name
        arrives, so that a later step for the new name applies to both.
        """
        self._check_free(name, from_version)
        self._steps[(name, from_version)] = step
        for reached in {name, to or name}:
            self._versions[reached] = max(self._versions.get(reached, 1), from_version + 1)

    def split(self, name: str, version: int, step: Splitter) -> None:
        """Read `name` events stored at `version` as the several events `step` makes of each (an
        event no longer raised, such as one that did two things)."""
        self._check_free(name, version)
        self._splits[(name, version)] = step
        self._versions[name] = max(self._versions.get(name, 1), version + 1)

    def _check_free(self, name: str, version: int) -> None:
        if (name, version) in self._steps or (name, version) in self._splits:
            raise ValueError(f"an upcaster for {name} v{version} is already registered")

    def version(self, name: str) -> int:
        """The schema version new `name` events are stored at: no registered step applies to it.

        1 for a name no step concerns; otherwise one past the last step registered for the name
        or declared (`to`) to rename an event to it.
        """
        return self._versions.get(name, 1)

    def upcast(self, name: str, version: int, payload: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The events one stored event is read as today, in order: every registered step from
        `version` upward (one event, unless a step split it)."""
        if (name, version) not in self._steps and (name, version) not in self._splits:
            return [(name, payload)]  # stored in today's shape: the common case, at once
        found: list[tuple[str, dict[str, Any]]] = []
        pending = [(name, version, payload)]
        while pending:
            name, version, payload = pending.pop(0)
            if (split := self._splits.get((name, version))) is not None:
                pending[0:0] = split(payload)
            elif (step := self._steps.get((name, version))) is not None:
                name, payload = step(payload)
                pending.insert(0, (name, version + 1, payload))
            else:
                found.append((name, payload))
        return found
