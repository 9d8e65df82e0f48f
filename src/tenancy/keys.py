"""Resolving API keys on the hot path: a cache in front of the catalog, bounded in bytes.

Entries are keyed by the key's SHA-256, never by the key itself, so a 4 MB token costs 32 bytes.
A route is remembered for `ttl` seconds (ERP_CACHE_TTL, a minute by default): with 10,000 accounts
each comes back less often than a few seconds, and asking the catalog every time cost the API a
fifth of its commands per second. When a move switches an account's route, every API process is
told to forget the account's keys at once (`core.invalidations`); with Redis away, `ttl` bounds how
long an old route lives (a move waits twice that before it removes the old copy), and writes on an
old route are refused by the move's fence anyway.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TypeVar
from uuid import UUID

from tenancy.catalog import API_KEY_LENGTH, AccountCatalog, AccountStatus, KeyOwner, hash_key

V = TypeVar("V")

ROUTE_TTL = 60.0
"""Seconds a resolved key (and so its account's route) is remembered at most."""
MAX_KNOWN = 100_000
"""Keys remembered at most: about 45 MB (a 32-byte digest, its expiry and its KeyOwner with a
route: 430 bytes each, measured with tracemalloc)."""
VOUCHED_FOR = 3600.0
"""Seconds a key that authenticated stays vouched for (`knows`): an address over its limit of
failed authentications may still present it, and have it looked up."""
MAX_UNKNOWN = 10_000
"""Unknown keys remembered at most (so a stranger's guesses do not each cost a catalog query, nor
crowd out the known keys): about 1.2 MB (a digest and its expiry: 120 bytes each). A token longer
than a key (`API_KEY_LENGTH`) is not remembered at all."""


class KeyCache:
    """Remembers resolved keys so the hot path skips the catalog.

    An account still onboarding is not remembered: it becomes active any moment. A key that expires
    is remembered until it does, not longer. Full, the oldest entries go first.
    """

    def __init__(
        self,
        catalog: AccountCatalog,
        ttl: float = ROUTE_TTL,
        max_known: int = MAX_KNOWN,
        max_unknown: int = MAX_UNKNOWN,
    ) -> None:
        self._catalog = catalog
        self._ttl = ttl
        self._known: dict[bytes, tuple[float, KeyOwner]] = {}
        self._unknown: dict[bytes, float] = {}
        self._vouched: dict[bytes, float] = {}
        """Keys that authenticated within VOUCHED_FOR seconds: a digest and a time, at most
        `max_known` (about 12 MB)."""
        self._limits = (max_known, max_unknown)

    async def resolve(self, api_key: str) -> KeyOwner | None:
        if len(api_key) > API_KEY_LENGTH:
            return None  # no key is that long: neither hashed, nor looked up, nor remembered
        hashed = hash_key(api_key)
        now = time.monotonic()
        known = self._known.get(hashed)
        if known is not None and known[0] > now:
            return known[1]
        if self._unknown.get(hashed, 0.0) > now:
            return None
        owner = await self._catalog.resolve_hashed(hashed)
        if owner is None:
            _put(self._unknown, hashed, now + self._ttl, self._limits[1])
        elif owner.status != AccountStatus.ONBOARDING:
            _put(self._known, hashed, (_until(now, self._ttl, owner.expires_at), owner), self._limits[0])
        if owner is not None and owner.active:
            _put(self._vouched, hashed, now + VOUCHED_FOR, self._limits[0])
        return owner

    def knows(self, api_key: str) -> bool:
        """True when the key authenticated in this process within VOUCHED_FOR seconds (it may have
        been revoked since: it is still looked up, only not refused unseen)."""
        if len(api_key) > API_KEY_LENGTH:
            return False
        return self._vouched.get(hash_key(api_key), 0.0) > time.monotonic()

    def forget(self, api_key: str) -> None:
        """Resolve the key from the catalog next time (its account's route has changed)."""
        self._known.pop(hash_key(api_key), None)

    def forget_account(self, account_id: UUID) -> None:
        """Resolve every key of the account from the catalog next time (a move switched its route)."""
        for hashed in [h for h, (_, owner) in self._known.items() if owner.route.account_id == account_id]:
            del self._known[hashed]

    def __len__(self) -> int:
        return len(self._known) + len(self._unknown)


def _until(now: float, ttl: float, expires_at: datetime | None) -> float:
    """When an entry stops being served: after `ttl`, or when its key expires if that is sooner."""
    if expires_at is None:
        return now + ttl
    return now + min(ttl, expires_at.timestamp() - time.time())


def _put(entries: dict[bytes, V], key: bytes, value: V, limit: int) -> None:
    entries.pop(key, None)
    while len(entries) >= limit:
        del entries[next(iter(entries))]
    entries[key] = value
