"""Database plumbing: the SQLAlchemy metadata every package's tables hang on, and asyncpg pools."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from sqlalchemy import MetaData

from erp.settings import Settings

metadata = MetaData()

TENANT_ROLE = "erp_tenant"
"""The role tenant transactions switch to: no BYPASSRLS, so row-level security always applies."""


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _jsonb_text(value: Any) -> str:
    return _encode(value).decode()


async def _init_connection(connection: asyncpg.Connection[Any]) -> None:
    await connection.set_type_codec("jsonb", encoder=_jsonb_text, decoder=_decode, schema="pg_catalog")


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
