"""Per-account customisation: an account adds attributes to an element, no restart needed.

Commands carry them under `Custom` (e.g. `{"Custom": {"LoyaltyNumber": "L-17"}}`
on MakeCustomer); they are validated against the account's definitions, stored
in the events, projected into the read model's `custom` column and returned by
queries. Definitions live under row-level security, so another account
neither sees them nor may use them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from commands.errors import InvalidCommand
from commands.model import money_text, parse_date, parse_money
from core.invalidations import CUSTOMISATIONS, Invalidations
from tenancy.fences import write_unfenced
from tenancy.rls import tenant_transaction

TYPES = ("string", "integer", "money", "boolean", "date")
NAME = re.compile(r"^[A-Z][A-Za-z0-9]{0,62}$")


@dataclass(frozen=True, slots=True)
class CustomAttribute:
    element: str
    attribute: str
    type: str
    required: bool = False
    max_length: int | None = None

    def check(self, value: Any) -> Any:
        """The value as it is stored (money with two decimals, "10.00"); InvalidCommand naming the
        attribute when it does not fit. Money and dates follow the model's grammar exactly."""
        where = f"Custom.{self.attribute}"
        pointer = f"/Custom/{self.attribute}"
        if value is None:
            if self.required:
                raise InvalidCommand(f"{where} is required", pointer)
            return None
        if self.type == "string":
            if not isinstance(value, str) or "\x00" in value:
                raise InvalidCommand(f"{where} must be a string (without U+0000)", pointer)
            if len(value) > (self.max_length or 200):
                raise InvalidCommand(f"{where} is longer than {self.max_length or 200} characters", pointer)
        elif self.type == "integer":
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidCommand(f"{where} must be an integer", pointer)
        elif self.type == "boolean":
            if not isinstance(value, bool):
                raise InvalidCommand(f"{where} must be true or false", pointer)
        elif self.type == "money":
            try:
                return money_text(parse_money(value, where))
            except ValueError as error:
                raise InvalidCommand(str(error), pointer) from None
        elif self.type == "date":
            try:
                parse_date(value, where)
            except ValueError as error:
                raise InvalidCommand(str(error), pointer) from None
        return value


_DEFINITIONS = "SELECT element, attribute, type, required, max_length FROM erp_customisations($1)"
"""`erp_customisations` lives beside this module, in customisations.sql (applied by every migration)."""


CUSTOMISATIONS_TTL = 60.0
"""Seconds an account's definitions are served without asking the database, at most."""
MAX_BYTES = 32 * 1024 * 1024
"""Estimated bytes of definitions one tenant database's pipeline keeps at most (the accounts read
longest ago go first): 80,000 accounts without any, or 10,000 with five each."""
ACCOUNT_BYTES = 400
"""An account's entry without definitions: its id, its expiry, its dictionary (measured: ~300)."""
DEFINITION_BYTES = 600
"""One definition: a CustomAttribute, its strings and its dictionary slot (measured: ~450)."""


class Customisations:
    """An account's custom attributes, cached for `ttl` seconds (ERP_CACHE_TTL); defining one clears
    this process's entry at once, and every other API process's through `invalidations`."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        ttl: float = CUSTOMISATIONS_TTL,
        invalidations: Invalidations | None = None,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self._pool = pool
        self._ttl = ttl
        self._invalidations = invalidations
        self._cache: dict[UUID, tuple[float, dict[str, dict[str, CustomAttribute]], int]] = {}
        """By account: until when, the definitions, their estimated bytes."""
        self._max_bytes = max_bytes
        self.bytes = 0

    async def for_account(
        self, account_id: UUID, *, fresh: bool = False
    ) -> dict[str, dict[str, CustomAttribute]]:
        """{element: {attribute: definition}} for one account; `fresh`: read again unless read
        within the last second (a value naming an attribute not yet heard of: it may be new)."""
        now = time.monotonic()
        cached = self._cache.get(account_id)
        if cached is not None and cached[0] > now and not (fresh and cached[0] - self._ttl < now - 1.0):
            return cached[1]
        rows = await self._pool.fetch(_DEFINITIONS, account_id)
        definitions: dict[str, dict[str, CustomAttribute]] = {}
        for r in rows:
            definitions.setdefault(r["element"], {})[r["attribute"]] = CustomAttribute(
                r["element"], r["attribute"], r["type"], r["required"], r["max_length"]
            )
        self.forget(account_id)
        size = ACCOUNT_BYTES + DEFINITION_BYTES * len(rows)
        if size <= self._max_bytes // 8:  # an account's thousands of definitions are read each time
            while self.bytes + size > self._max_bytes:
                self.forget(next(iter(self._cache)))
            self._cache[account_id] = (now + self._ttl, definitions, size)
            self.bytes += size
        return definitions

    def forget(self, account_id: UUID) -> None:
        """Read the account's definitions from the database next time (one was defined)."""
        entry = self._cache.pop(account_id, None)
        if entry is not None:
            self.bytes -= entry[2]

    async def define(self, account_id: UUID, attribute: CustomAttribute) -> bool:
        """Add a definition; False if the account already has one of that name on that element."""
        async with tenant_transaction(self._pool, account_id) as connection:
            await write_unfenced(connection, account_id)
            status = await connection.execute(
                "INSERT INTO customisations (account_id, element, attribute, type, required, max_length) "
                "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                account_id,
                attribute.element,
                attribute.attribute,
                attribute.type,
                attribute.required,
                attribute.max_length,
            )
        self.forget(account_id)
        defined = bool(status.endswith(" 1"))
        if defined and self._invalidations is not None:
            await self._invalidations.publish(CUSTOMISATIONS, account_id)
        return defined

    async def check(
        self,
        account_id: UUID,
        element: str,
        custom: dict[str, Any] | None,
        creates: bool,
        normalise: bool = True,
    ) -> None:
        """Validate a command's `Custom` values for the element it addresses; once all fit, with
        `normalise`, write them in `custom` as they are stored (money with two decimals)."""
        definitions = (await self.for_account(account_id)).get(element, {})
        if any(name not in definitions for name in custom or {}):
            # Defined a moment ago on another API, its word lost on the way? Ask once.
            definitions = (await self.for_account(account_id, fresh=True)).get(element, {})
        for name in custom or {}:
            if name not in definitions:
                known = ", ".join(sorted(definitions)) or "none"
                raise InvalidCommand(
                    f"Custom.{name}: {element} has no custom attribute {name} in this account "
                    f"(defined: {known})",
                    f"/Custom/{name}",
                )
        stored: dict[str, Any] = {}
        for definition in definitions.values():
            value = (custom or {}).get(definition.attribute)
            if value is None and not creates:
                continue
            checked = definition.check(value)
            if value is not None:
                stored[definition.attribute] = checked
        if normalise and custom:
            custom.update(stored)

    async def check_one_of(
        self, account_id: UUID, elements: tuple[str, ...], custom: dict[str, Any] | None, creates: bool
    ) -> None:
        """Up-front check for a command whose key may name any of `elements`: the values must fit one.

        Once the handler knows which element the key names, `check` decides for that one (and writes
        the values as stored; with one element to fit, this check does).
        """
        first: InvalidCommand | None = None
        for element in elements:
            try:
                await self.check(account_id, element, custom, creates, normalise=len(elements) == 1)
            except InvalidCommand as error:
                first = first or error
            else:
                return
        if first is not None:
            raise first
