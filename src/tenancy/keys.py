"""Resolving API keys on the hot path: a short-lived cache in front of the catalog."""

from __future__ import annotations

import time

from tenancy.catalog import AccountCatalog, AccountStatus, KeyOwner

ROUTE_TTL = 5.0
"""Seconds a resolved key (and so its account's route) is remembered: a moved account's old route
is gone from every API within this time."""


class KeyCache:
    """Remembers resolved keys briefly so the hot path skips the catalog; revocation applies within `ttl`.

    An account still onboarding is not remembered: it becomes active any moment.
    """

    def __init__(self, catalog: AccountCatalog, ttl: float = ROUTE_TTL, max_entries: int = 100_000) -> None:
        self._catalog = catalog
        self._ttl = ttl
        self._max = max_entries
        self._entries: dict[str, tuple[float, KeyOwner | None]] = {}

    async def resolve(self, api_key: str) -> KeyOwner | None:
        now = time.monotonic()
        cached = self._entries.get(api_key)
        if cached is not None and cached[0] > now:
            return cached[1]
        owner = await self._catalog.resolve_key(api_key)
        if owner is not None and owner.status == AccountStatus.ONBOARDING:
            return owner
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[api_key] = (now + self._ttl, owner)
        return owner

    def forget(self, api_key: str) -> None:
        """Resolve the key from the catalog next time (its account's route has changed)."""
        self._entries.pop(api_key, None)
