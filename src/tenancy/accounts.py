"""The account catalog: register accounts, issue and resolve API keys (stored only as hashes)."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tenancy.routing import Route
from tenancy.tables import accounts, api_keys

KEY_PREFIX = "erp_"


class AccountStatus:
    ONBOARDING = "Onboarding"
    ACTIVE = "Active"


@dataclass(frozen=True, slots=True)
class Account:
    account_id: UUID
    name: str
    status: str
    database: str


@dataclass(frozen=True, slots=True)
class KeyOwner:
    """Where the account a key belongs to lives, and whether it is active yet."""

    route: Route
    status: str

    @property
    def active(self) -> bool:
        return self.status == AccountStatus.ACTIVE


def hash_key(api_key: str) -> bytes:
    """API keys are high-entropy secrets, so one SHA-256 is the right hash (no salt or KDF needed)."""
    return hashlib.sha256(api_key.encode()).digest()


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class AccountCatalog:
    """Reads and writes the catalog through SQLAlchemy Core (operators' path, not the hot path)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def register(
        self, name: str, database: str, *, expires_at: datetime | None = None
    ) -> tuple[Account, str]:
        """A new account in status Onboarding, placed in `database`, with its first API key.

        The key is returned once, in clear; only its hash is stored.
        """
        account = Account(uuid.uuid4(), name, AccountStatus.ONBOARDING, database)
        api_key = new_api_key()
        async with self._engine.begin() as connection:
            await connection.execute(
                insert(accounts).values(
                    account_id=account.account_id, name=name, status=account.status, database=database
                )
            )
            await connection.execute(
                insert(api_keys).values(
                    key_hash=hash_key(api_key), account_id=account.account_id, expires_at=expires_at
                )
            )
        return account, api_key

    async def issue_key(self, account_id: UUID, *, expires_at: datetime | None = None) -> str:
        api_key = new_api_key()
        async with self._engine.begin() as connection:
            await connection.execute(
                insert(api_keys).values(
                    key_hash=hash_key(api_key), account_id=account_id, expires_at=expires_at
                )
            )
        return api_key

    async def revoke_key(self, api_key: str) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                update(api_keys).where(api_keys.c.key_hash == hash_key(api_key)).values(revoked_at=func.now())
            )

    async def get(self, account_id: UUID) -> Account | None:
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    select(
                        accounts.c.account_id, accounts.c.name, accounts.c.status, accounts.c.database
                    ).where(accounts.c.account_id == account_id)
                )
            ).first()
        return None if row is None else Account(row.account_id, row.name, row.status, row.database)

    async def list(self) -> list[Account]:
        async with self._engine.connect() as connection:
            rows = await connection.execute(
                select(
                    accounts.c.account_id, accounts.c.name, accounts.c.status, accounts.c.database
                ).order_by(accounts.c.created_at)
            )
            return [Account(r.account_id, r.name, r.status, r.database) for r in rows]

    async def set_status(self, account_id: UUID, status: str) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                update(accounts).where(accounts.c.account_id == account_id).values(status=status)
            )

    async def resolve_key(self, api_key: str) -> KeyOwner | None:
        """The account a live (unrevoked, unexpired) key belongs to, and its status; else None."""
        query = (
            select(api_keys.c.account_id, accounts.c.database, accounts.c.status)
            .join(accounts, accounts.c.account_id == api_keys.c.account_id)
            .where(
                api_keys.c.key_hash == hash_key(api_key),
                api_keys.c.revoked_at.is_(None),
                or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > func.now()),
            )
        )
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).first()
        return None if row is None else KeyOwner(Route(row.account_id, row.database), row.status)

    async def onboarding(self) -> Sequence[Account]:
        """Accounts registered but not yet active: their onboarding has not finished."""
        async with self._engine.connect() as connection:
            rows = await connection.execute(
                select(accounts.c.account_id, accounts.c.name, accounts.c.status, accounts.c.database)
                .where(accounts.c.status == AccountStatus.ONBOARDING)
                .order_by(accounts.c.created_at)
            )
            return [Account(r.account_id, r.name, r.status, r.database) for r in rows]


class KeyCache:
    """Remembers resolved keys briefly so the hot path skips the catalog; revocation applies within `ttl`.

    An account still onboarding is not remembered: it becomes active any moment.
    """

    def __init__(self, catalog: AccountCatalog, ttl: float = 5.0, max_entries: int = 100_000) -> None:
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
