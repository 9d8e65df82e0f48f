"""Customers carry their party's name whichever read-model row is written first (the projector
applies Person, Organisation and Customer streams in any order), and follow renames."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

import asyncpg

from tests.conftest import make_account

PARTY = "INSERT INTO {table} (account_id, id, created_at, updated_at, name) VALUES ($1, $2, now(), now(), $3)"
CUSTOMER = (
    "INSERT INTO rm_customer (account_id, id, created_at, updated_at, party_id) "
    "VALUES ($1, $2, now(), now(), $3)"
)


async def name_of(pool: asyncpg.Pool[Any], account_id: UUID, customer_id: UUID) -> str | None:
    name: str | None = await pool.fetchval(
        "SELECT party_name FROM rm_customer WHERE account_id = $1 AND id = $2", account_id, customer_id
    )
    return name


async def test_a_customer_written_before_its_party_gets_the_name_when_the_party_arrives(
    pool: asyncpg.Pool[Any],
) -> None:
    account_id, party, customer = await make_account(pool), uuid.uuid4(), uuid.uuid4()
    await pool.execute(CUSTOMER, account_id, customer, party)
    assert await name_of(pool, account_id, customer) is None
    await pool.execute(PARTY.format(table="rm_organisation"), account_id, party, "Acme")
    assert await name_of(pool, account_id, customer) == "Acme"


async def test_a_customer_written_after_its_party_takes_its_name_and_follows_renames(
    pool: asyncpg.Pool[Any],
) -> None:
    account_id, party, customer = await make_account(pool), uuid.uuid4(), uuid.uuid4()
    await pool.execute(PARTY.format(table="rm_person"), account_id, party, "Ada Lovelace")
    await pool.execute(CUSTOMER, account_id, customer, party)
    assert await name_of(pool, account_id, customer) == "Ada Lovelace"
    await pool.execute(
        "UPDATE rm_person SET name = 'Ada King' WHERE account_id = $1 AND id = $2", account_id, party
    )
    assert await name_of(pool, account_id, customer) == "Ada King"


async def test_another_accounts_party_with_the_same_id_gives_no_name(pool: asyncpg.Pool[Any]) -> None:
    mine, theirs = await make_account(pool), await make_account(pool)
    party, customer = uuid.uuid4(), uuid.uuid4()
    await pool.execute(CUSTOMER, mine, customer, party)
    await pool.execute(PARTY.format(table="rm_person"), theirs, party, "Not Mine")
    assert await name_of(pool, mine, customer) is None
