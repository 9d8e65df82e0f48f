"""Database plumbing: asyncpg pools whose connections speak jsonb, and finishing work before a cancel."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import asyncpg
import msgspec

from core.settings import Settings

T = TypeVar("T")

TENANT_ROLE = "erp_tenant"
"""The role tenant transactions switch to: no BYPASSRLS, so row-level security always applies."""


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


_JSONB_VERSION = b"\x01"
"""jsonb's binary format: a version byte, then the JSON text."""


def _jsonb_binary(value: Any) -> bytes:
    return _JSONB_VERSION + _encode(value)


def _from_jsonb_binary(data: bytes) -> Any:
    return _decode(memoryview(data)[1:])


async def _init_connection(connection: asyncpg.Connection[Any]) -> None:
    # Binary, so that COPY can write jsonb too (`queries.row_folds`): asyncpg's binary COPY has no
    # text codecs.
    await connection.set_type_codec(
        "jsonb", encoder=_jsonb_binary, decoder=_from_jsonb_binary, schema="pg_catalog", format="binary"
    )


async def _keep_session(connection: asyncpg.Connection[Any]) -> None:
    """Skip asyncpg's reset query on release (a round trip per statement on the hot path).

    Safe because nothing here changes session state: tenant scoping uses
    SET LOCAL (transaction-scoped) and LISTEN runs on dedicated connections.
    """


async def create_pool(settings: Settings, *, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool[Any]:
    """An asyncpg pool whose connections speak jsonb as Python objects."""
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        statement_cache_size=256,
        reset=_keep_session,
    )
    assert pool is not None
    return pool


async def finish_before_cancelling(work: Awaitable[T], grace: float = 60.0) -> T:
    """Run `work` to its end even if the caller is cancelled meanwhile, then pass the cancellation on.

    asyncpg cannot cancel an executemany halfway through its pipeline: the connection then waits
    forever for the rest, with its transaction and row locks open. A unit of work that uses it
    (a projector batch) is therefore finished, or given `grace` seconds, before the cancellation
    takes effect.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task], timeout=grace)
        raise
