"""The cache of accounts' custom attribute definitions is bounded in bytes: the accounts read longest
ago go first, and an account with thousands of definitions is read each time rather than cached."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from commands.customisation import ACCOUNT_BYTES, DEFINITION_BYTES, Customisations


class Definitions:
    """A pool whose accounts each have `count(account)` string attributes on Customer."""

    def __init__(self, counts: dict[UUID, int]) -> None:
        self.counts = counts
        self.reads = 0

    async def fetch(self, sql: str, account_id: UUID) -> list[dict[str, Any]]:
        self.reads += 1
        return [
            {
                "element": "Customer",
                "attribute": f"A{n}",
                "type": "string",
                "required": False,
                "max_length": None,
            }
            for n in range(self.counts.get(account_id, 0))
        ]


def test_the_cache_keeps_within_its_bytes_and_reads_a_huge_account_each_time() -> None:
    accounts = [UUID(int=n) for n in range(1, 40)]
    huge = UUID(int=999)
    pool = Definitions({**{a: 3 for a in accounts}, huge: 10_000})
    max_bytes = 10 * (ACCOUNT_BYTES + 3 * DEFINITION_BYTES)
    cache = Customisations(pool, ttl=60.0, max_bytes=max_bytes)  # type: ignore[arg-type]

    async def scenario() -> None:
        for account in accounts:
            assert len((await cache.for_account(account))["Customer"]) == 3
            assert cache.bytes <= max_bytes
        assert cache.bytes == max_bytes  # the last ten
        reads = pool.reads
        await cache.for_account(accounts[-1])
        assert pool.reads == reads  # still cached
        await cache.for_account(accounts[0])
        assert pool.reads == reads + 1  # gone long ago
        for _ in range(2):
            assert len((await cache.for_account(huge))["Customer"]) == 10_000
        assert pool.reads == reads + 3 and cache.bytes <= max_bytes
        cache.forget(accounts[-1])
        assert cache.bytes == max_bytes - (ACCOUNT_BYTES + 3 * DEFINITION_BYTES)

    asyncio.run(scenario())
