"""The account catalog, and all of its SQL: accounts, where each lives, and their API keys.

The catalog lives in the `main` tenant database. API keys are stored only as hashes; a key is
shown once, when it is issued.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import asyncpg

from core.deployment import Deployment
from tenancy.routing import Databases, Route

KEY_PREFIX = "erp_"


class AccountStatus:
    ONBOARDING: Final = "Onboarding"
    ACTIVE: Final = "Active"
    OFFBOARDING: Final = "Offboarding"
    """Its keys are revoked and its rows are being removed (`tenancy.offboarding`)."""


class UnknownAccount(LookupError):
    """No account has that id."""

    def __init__(self, account_id: UUID) -> None:
        super().__init__(f"there is no account {account_id}")
        self.account_id = account_id


@dataclass(frozen=True, slots=True)
class Account:
    account_id: UUID
    name: str
    status: str
    database: str


@dataclass(frozen=True, slots=True)
class NewAccount:
    """An account to register in bulk: its name and the database it is placed in."""

    name: str
    database: str


Registered = list[tuple[Account, str]]
"""Accounts registered together, each with its first API key (in clear, shown once)."""


@dataclass(frozen=True, slots=True)
class ImportState:
    """How far a bulk import is: its accounts, how many are Active, and whether it has finished."""

    import_id: UUID
    accounts: int
    active: int
    finished: bool


@dataclass(frozen=True, slots=True)
class KeyOwner:
    """Where the account a key belongs to lives, and whether it is active yet."""

    route: Route
    status: str
    expires_at: datetime | None = None
    """When the key stops working, if ever."""

    @property
    def active(self) -> bool:
        return self.status == AccountStatus.ACTIVE


def hash_key(api_key: str) -> bytes:
    """API keys are high-entropy secrets, so one SHA-256 is the right hash (no salt or KDF needed)."""
    return hashlib.sha256(api_key.encode()).digest()


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


API_KEY_LENGTH = len(KEY_PREFIX) + 43
"""Characters of every API key: the prefix and 32 random bytes in URL-safe base64 (43, unpadded).
A longer bearer token is no key, and is refused before it is hashed or looked up."""


_ACCOUNT = "SELECT account_id, name, status, database FROM accounts"
_REGISTER = "INSERT INTO accounts (account_id, name, status, database) VALUES ($1, $2, $3, $4)"
_ISSUE_KEY = "INSERT INTO api_keys (key_hash, account_id, expires_at) VALUES ($1, $2, $3)"
_SET_STATUS = "UPDATE accounts SET status = $2 WHERE account_id = $1"
_RELOCATE = """
UPDATE accounts SET database = $3 WHERE account_id = $1 AND database IN ($2, $3) RETURNING account_id
"""
_RESOLVE_KEY = """
SELECT k.account_id, a.database, a.status, k.expires_at
FROM api_keys k JOIN accounts a ON a.account_id = k.account_id
WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
"""
_COUNTS = "SELECT database, accounts AS n FROM account_counts"
_ONBOARDING = f"""
{_ACCOUNT} WHERE status = 'Onboarding' AND import_id IS NULL ORDER BY created_at LIMIT $1
"""
_NEW_IMPORT = "INSERT INTO account_imports (import_id, accounts) VALUES ($1, $2)"
_UNFINISHED_IMPORTS = "SELECT import_id FROM account_imports WHERE finished_at IS NULL ORDER BY created_at"
_IMPORT_STATE = """
SELECT i.import_id, i.accounts, i.finished_at IS NOT NULL AS finished,
       (SELECT count(*) FROM accounts a WHERE a.import_id = i.import_id AND a.status = 'Active') AS active
FROM account_imports i WHERE i.import_id = $1
"""
_ACTIVATE_IMPORTED = """
UPDATE accounts SET status = 'Active'
WHERE account_id IN (
    SELECT account_id FROM accounts WHERE import_id = $1 AND status = 'Onboarding' LIMIT $2
)
"""
_FINISH_IMPORT = "UPDATE account_imports SET finished_at = coalesce(finished_at, now()) WHERE import_id = $1"
_DEPLOYMENT = "SELECT id FROM deployment"
_BEGIN_OFFBOARDING = """
UPDATE accounts SET status = 'Offboarding'
WHERE account_id = $1 AND database = $2 AND status IN ('Active', 'Offboarding') RETURNING account_id
"""
_DELETE_KEYS = "DELETE FROM api_keys WHERE account_id = $1"
_DELETE_ACCOUNT = "DELETE FROM accounts WHERE account_id = $1"


def _account(row: asyncpg.Record) -> Account:
    return Account(row["account_id"], row["name"], row["status"], row["database"])


class AccountCatalog:
    """Reads and writes the catalog (in the `main` database)."""

    def __init__(self, databases: Databases) -> None:
        self._databases = databases

    @property
    def _pool(self) -> asyncpg.Pool[Any]:
        return self._databases.main

    async def register(
        self, name: str, database: str, *, expires_at: datetime | None = None
    ) -> tuple[Account, str]:
        """A new account in status Onboarding, placed in `database`, with its first API key.

        The key is returned once, in clear; only its hash is stored.
        """
        account = Account(uuid.uuid4(), name, AccountStatus.ONBOARDING, database)
        api_key = new_api_key()
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(_REGISTER, account.account_id, name, account.status, database)
            await connection.execute(_ISSUE_KEY, hash_key(api_key), account.account_id, expires_at)
        return account, api_key

    async def issue_key(self, account_id: UUID, *, expires_at: datetime | None = None) -> str:
        api_key = new_api_key()
        await self._pool.execute(_ISSUE_KEY, hash_key(api_key), account_id, expires_at)
        return api_key

    async def get(self, account_id: UUID) -> Account | None:
        row = await self._pool.fetchrow(f"{_ACCOUNT} WHERE account_id = $1", account_id)
        return None if row is None else _account(row)

    async def require(self, account_id: UUID) -> Account:
        """The account; UnknownAccount if there is none."""
        account = await self.get(account_id)
        if account is None:
            raise UnknownAccount(account_id)
        return account

    async def list(self, limit: int | None = None) -> list[Account]:
        """Accounts in the order they were opened: every one, or the first `limit`."""
        rows = await self._pool.fetch(f"{_ACCOUNT} ORDER BY created_at LIMIT $1", limit)
        return [_account(r) for r in rows]

    async def register_many(
        self,
        accounts: Sequence[NewAccount],
        import_id: UUID,
        before_commit: Callable[[Registered], None] | None = None,
    ) -> Registered:
        """Register accounts in status Onboarding, all or none, each with its first API key, as
        one import; (account, API key) for each, in order. The keys are returned once, in clear;
        `before_commit` sees them before they commit, and if it raises nothing is registered."""
        registered = [
            (Account(uuid.uuid4(), a.name, AccountStatus.ONBOARDING, a.database), new_api_key())
            for a in accounts
        ]
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(_NEW_IMPORT, import_id, len(registered))
            await connection.copy_records_to_table(
                "accounts",
                records=[(a.account_id, a.name, a.status, a.database, import_id) for a, _ in registered],
                columns=["account_id", "name", "status", "database", "import_id"],
            )
            await connection.copy_records_to_table(
                "api_keys",
                records=[(hash_key(key), a.account_id) for a, key in registered],
                columns=["key_hash", "account_id"],
            )
            if before_commit is not None:
                before_commit(registered)
        return registered

    async def onboarding(self, limit: int = 1000) -> Sequence[Account]:
        """Accounts opened one by one and not yet active (an import's are its workflow's), oldest
        first, at most `limit`."""
        return [_account(r) for r in await self._pool.fetch(_ONBOARDING, limit)]

    async def unfinished_imports(self) -> Sequence[UUID]:
        """Bulk imports whose workflow has not finished."""
        return [r["import_id"] for r in await self._pool.fetch(_UNFINISHED_IMPORTS)]

    async def import_state(self, import_id: UUID) -> ImportState | None:
        row = await self._pool.fetchrow(_IMPORT_STATE, import_id)
        if row is None:
            return None
        return ImportState(row["import_id"], row["accounts"], row["active"], row["finished"])

    async def activate_imported(self, import_id: UUID, limit: int) -> int:
        """Activate up to `limit` of the import's accounts still Onboarding; how many were."""
        status = await self._pool.execute(_ACTIVATE_IMPORTED, import_id, limit)
        return int(status.split()[-1])

    async def finish_import(self, import_id: UUID) -> None:
        await self._pool.execute(_FINISH_IMPORT, import_id)

    async def set_status(self, account_id: UUID, status: str) -> None:
        await self._pool.execute(_SET_STATUS, account_id, status)

    async def resolve_key(self, api_key: str) -> KeyOwner | None:
        """The account a live (unrevoked, unexpired) key belongs to, and its status; else None."""
        return await self.resolve_hashed(hash_key(api_key))

    async def resolve_hashed(self, key_hash: bytes) -> KeyOwner | None:
        """`resolve_key`, given the key's SHA-256 (`hash_key`)."""
        row = await self._pool.fetchrow(_RESOLVE_KEY, key_hash)
        if row is None:
            return None
        return KeyOwner(Route(row["account_id"], row["database"]), row["status"], row["expires_at"])

    async def accounts_per_database(self) -> dict[str, int]:
        """How many accounts each tenant database holds (for placing new ones)."""
        return {r["database"]: r["n"] for r in await self._pool.fetch(_COUNTS)}

    async def deployment(self) -> Deployment:
        """The deployment this catalog belongs to (its id was made when it was first migrated)."""
        return Deployment(await self._pool.fetchval(_DEPLOYMENT))

    async def relocate(self, account_id: UUID, source: str, target: str) -> None:
        """Route the account to `target` (it was in `source`; idempotent)."""
        if await self._pool.fetchval(_RELOCATE, account_id, source, target) is None:
            raise RuntimeError(f"account {account_id} is in neither {source} nor {target}")

    async def begin_offboarding(self, account_id: UUID, database: str) -> bool:
        """Mark the account Offboarding and delete its API keys, at once (idempotent); False, with
        nothing done, unless it is Active (or Offboarding already) in `database`."""
        async with self._pool.acquire() as connection, connection.transaction():
            if await connection.fetchval(_BEGIN_OFFBOARDING, account_id, database) is None:
                return False
            await connection.execute(_DELETE_KEYS, account_id)
        return True

    async def remove(self, account_id: UUID) -> None:
        """Forget the account: its keys and its row (the per-database count follows by trigger);
        idempotent. Its bulk import, if any, keeps its record."""
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(_DELETE_KEYS, account_id)
            await connection.execute(_DELETE_ACCOUNT, account_id)
