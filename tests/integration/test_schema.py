"""The schema the migrations build: each store function once, from its `.sql` file; the append's
arguments named as the function names them; and a database made by the code before the functions
moved into `.sql` files upgrades to the same schema as a fresh one."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.script import ScriptDirectory

from commands.store.event_store import (
    APPEND_PARAMETERS,
    AppendRequest,
    CommandAlreadyLogged,
    CommandLogEntry,
    CommandMetadata,
    EventStore,
    PendingEvent,
    StreamWrite,
    batch_arguments,
)
from core.db import create_pool
from core.settings import Settings
from erp.devserver import create_database, drop_database, with_database
from erp.migrate import alembic_config, upgrade_async
from erp.migrations.repeatable import store_functions
from tenancy.rls import tenant_transaction
from tenancy.routing import event_partition
from tests.conftest import BASE_DATABASE_URL, fresh_database, make_account
from tests.integration.test_event_store import metadata, stored, write

FIXTURES = Path(__file__).with_name("fixtures")
SCHEMA_0007 = FIXTURES / "schema_0007.sql"
"""A database at 0007 as the code before this change made it (see the file's header)."""

FUNCTIONS = {
    "erp_account_lock_key",
    "erp_append_batch",
    "erp_changed_pairs",
    "erp_claim_checkpoints",
    "erp_count_accounts",
    "erp_customisations",
    "erp_enter_account",
    "erp_erase_subject",
    "erp_events_are_immutable",
    "erp_fence_account",
    "erp_find_command",
    "erp_load_snapshot",
    "erp_load_stream",
    "erp_open_subject_keys",
    "erp_save_checkpoints",
    "erp_save_snapshot",
    "erp_store_subject_key",
    "erp_subject_keys",
    "erp_write_lock",
    "erp_write_unfenced",
}

NOT_PARTITIONS = "NOT LIKE 'events\\_%'"
"""Per-account partitions of `events` (made at onboarding) are data, not schema."""

SCHEMA_QUERIES = {
    "columns": f"""
        SELECT table_name, column_name, ordinal_position, data_type, is_nullable, column_default
        FROM information_schema.columns WHERE table_schema = 'public' AND table_name {NOT_PARTITIONS}""",
    "tables": f"""
        SELECT relname, relkind, relrowsecurity, relforcerowsecurity FROM pg_class
        WHERE relnamespace = 'public'::regnamespace AND relname {NOT_PARTITIONS}""",
    "constraints": f"""
        SELECT conrelid::regclass::text AS on_table, conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text {NOT_PARTITIONS}""",
    "indexes": f"""
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename {NOT_PARTITIONS}""",
    "policies": f"""
        SELECT tablename, policyname, permissive, roles::text, cmd, qual, with_check FROM pg_policies
        WHERE schemaname = 'public' AND tablename {NOT_PARTITIONS}""",
    "triggers": f"""
        SELECT tgrelid::regclass::text AS on_table, tgname, pg_get_triggerdef(oid) FROM pg_trigger
        WHERE NOT tgisinternal AND tgrelid::regclass::text {NOT_PARTITIONS}""",
    "functions": """
        SELECT proname, pg_get_function_identity_arguments(oid), pg_get_function_result(oid), prosrc
        FROM pg_proc WHERE pronamespace = 'public'::regnamespace""",
    "grants": f"""
        SELECT table_name, grantee, privilege_type FROM information_schema.role_table_grants
        WHERE table_schema = 'public' AND grantee = 'erp_tenant' AND table_name {NOT_PARTITIONS}""",
}


async def schema_of(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the migrations make, as sorted rows per kind."""
    connection = await asyncpg.connect(url)
    try:
        return {
            kind: sorted(tuple(row) for row in await connection.fetch(query))
            for kind, query in SCHEMA_QUERIES.items()
        }
    finally:
        await connection.close()


async def functions_of(connection: asyncpg.Connection[Any] | asyncpg.Pool[Any]) -> list[tuple[str, str]]:
    rows = await connection.fetch(
        "SELECT proname, pg_get_function_identity_arguments(oid) FROM pg_proc "
        "WHERE pronamespace = 'public'::regnamespace ORDER BY 1, 2"
    )
    return [(row[0], row[1]) for row in rows]


def old_partition(account_id: uuid.UUID) -> str:
    """How onboarding made an account's own partition before migration 0009 (one per account)."""
    name = f"events_{account_id.hex}"
    return (
        f"CREATE TABLE {name} PARTITION OF events FOR VALUES IN ('{account_id}'); "
        f"CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON {name} "
        "FOR EACH STATEMENT EXECUTE FUNCTION erp_events_are_immutable()"
    )


async def old_append(pool: asyncpg.Pool[Any], requests: list[AppendRequest]) -> list[asyncpg.Record]:
    """The append as the code before migration 0008 called it (no p_versions, nor p_stream_keys)."""
    before = [name for name in APPEND_PARAMETERS if name not in ("p_versions", "p_stream_keys")]
    values = dict(zip(APPEND_PARAMETERS, batch_arguments(requests), strict=True))
    call = ", ".join(f"{name} => ${n}" for n, name in enumerate(before, 1))
    return await pool.fetch(f"SELECT * FROM erp_append_batch({call})", *(values[name] for name in before))


async def database_at_0007() -> str:
    """A database at 0007, as the code before the functions moved into `.sql` files made it."""
    url = await new_database()
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(SCHEMA_0007.read_text(encoding="utf-8"))
    finally:
        await connection.close()
    return url


async def new_database() -> str:
    """An empty database of the test cluster, not migrated."""
    url = with_database(BASE_DATABASE_URL, f"erp_test_{uuid.uuid4().hex[:12]}")
    await create_database(url)
    return url


async def test_a_fresh_database_has_each_store_function_once_as_its_sql_file_writes_it(
    pool: asyncpg.Pool[Any],
) -> None:
    found = await functions_of(pool)
    assert {name for name, _ in found} == FUNCTIONS
    assert len(found) == len(FUNCTIONS), f"an overload: {found}"
    sources = "\n".join(store_functions())
    for name in (
        "erp_append_batch",
        "erp_customisations",
        "erp_enter_account",
        "erp_find_command",
        "erp_write_lock",
        "erp_fence_account",
    ):
        body = await pool.fetchval("SELECT prosrc FROM pg_proc WHERE proname = $1", name)
        assert body in sources, f"{name} is not the function its .sql file writes"


async def test_the_append_names_every_parameter_of_the_function_and_nothing_else(
    pool: asyncpg.Pool[Any],
) -> None:
    arguments = await pool.fetchval("SELECT pg_get_function_identity_arguments('erp_append_batch'::regproc)")
    declared = [f"{name} {sql_type}" for name, sql_type in APPEND_PARAMETERS.items()]
    assert arguments.split(", ") == declared


async def test_below_head_the_repeatable_step_does_not_run() -> None:
    """Functions and read models belong to head: an upgrade that stops earlier leaves them out."""
    url = await new_database()
    try:
        await upgrade_async(Settings(database_url=url), "0007")
        connection = await asyncpg.connect(url)
        try:
            assert await functions_of(connection) == [("erp_events_are_immutable", "")]
            assert await connection.fetchval("SELECT to_regclass('rm_order')") is None
        finally:
            await connection.close()
    finally:
        await drop_database(url)


async def test_a_database_made_before_the_functions_moved_upgrades_to_a_fresh_databases_schema() -> None:
    old, fresh = await database_at_0007(), await fresh_database()
    settings = Settings(database_url=old)
    try:
        # Events stored by the old code, through its own append (which had no p_versions).
        pool = await create_pool(settings, min_size=1, max_size=2)
        try:
            account_id = await make_account(pool, "Before")
            await pool.execute(old_partition(account_id))
            [row] = await old_append(pool, [AppendRequest(account_id, [write("Thing-1", 0)], metadata())])
            assert row["refusal"] is None
        finally:
            await pool.close()

        await upgrade_async(settings)
        await upgrade_async(settings)  # the repeatable step runs on every upgrade and changes nothing

        head = ScriptDirectory.from_config(alembic_config(settings)).get_current_head()
        connection = await asyncpg.connect(old)
        try:
            assert await connection.fetchval("SELECT version_num FROM alembic_version") == head
            names = [name for name, _ in await functions_of(connection)]
            assert names.count("erp_append_batch") == 1 and "erp_append" not in names
        finally:
            await connection.close()
        assert await schema_of(old) == await schema_of(fresh)

        # The old events load, and the new append continues the stream.
        pool = await create_pool(settings, min_size=1, max_size=2)
        try:
            store = EventStore()
            [loaded] = await store.load(pool, account_id, "Thing-1")
            assert (loaded.name, loaded.stream_revision) == ("Happened", 1)
            await store.append(pool, account_id, [write("Thing-1", 1)], metadata())
            assert [
                (r["stream_revision"], r["schema_version"]) for r in await stored(pool, account_id, "Thing-1")
            ] == [
                (1, 1),
                (2, 1),
            ]
        finally:
            await pool.close()
    finally:
        await drop_database(old)
        await drop_database(fresh)


ROWS = {
    "events": "SELECT * FROM events ORDER BY account_id, stream_id, stream_revision",
    "streams": "SELECT * FROM streams ORDER BY account_id, stream_id",
    "stream_sequences": "SELECT account_id, stream_type, last_sequence FROM stream_sequences ORDER BY 1, 2",
    "command_log": "SELECT * FROM command_log ORDER BY account_id, command_id",
}


async def test_one_partition_per_account_moves_to_the_fixed_partitions_with_every_row_unchanged() -> None:
    """Migration 0009 on a database with a partition per account: every event, stream, counter and
    logged command is kept exactly (every column), each account ends in one of the fixed
    partitions, and the store, row-level security and immutability work as before."""
    url = await database_at_0007()
    settings = Settings(database_url=url)
    try:
        pool = await create_pool(settings, min_size=1, max_size=2)
        try:
            accounts = [await make_account(pool, f"Old {n}") for n in range(40)]
            for account_id in accounts:
                await pool.execute(old_partition(account_id))
            for start in range(0, len(accounts), 20):  # batches of distinct accounts, in order
                batch = sorted(accounts[start : start + 20])
                requests = [
                    AppendRequest(a, [write("Thing-1", 0, 2), write("Other-1", 0)], metadata(), log=None)
                    for a in batch
                ]
                assert all(row["refusal"] is None for row in await old_append(pool, requests))
            logged = [
                AppendRequest(a, [write("Thing-2", 0)], metadata(), CommandLogEntry("Do", b"h", {"R": 1}))
                for a in sorted(accounts[:5])
            ]
            assert all(row["refusal"] is None for row in await old_append(pool, logged))
            before = {table: [tuple(r) for r in await pool.fetch(sql)] for table, sql in ROWS.items()}
            assert (
                await pool.fetchval("SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass")
                == 40
            )
        finally:
            await pool.close()

        await upgrade_async(settings)

        pool = await create_pool(settings, min_size=1, max_size=2)
        try:
            after = {table: [tuple(r) for r in await pool.fetch(sql)] for table, sql in ROWS.items()}
            assert after == before, "an event, stream, counter or logged command changed in the move"
            assert len(before["events"]) == 40 * 3 + 5
            for table in ("events", "streams", "command_log"):
                partitions = await pool.fetchval(
                    "SELECT count(*) FROM pg_inherits WHERE inhparent = $1::regclass", table
                )
                assert partitions == settings.partitions, table
            for account_id in accounts:
                parts = await pool.fetch(
                    "SELECT DISTINCT tableoid::regclass::text AS part FROM events WHERE account_id = $1",
                    account_id,
                )
                assert [p["part"] for p in parts] == [await event_partition(pool, account_id)]
            # The store goes on where the old one stopped, and refuses a logged command again.
            store = EventStore()
            a = accounts[-1]  # not among the logged ones: its Thing counter is at 3
            result = await store.append(pool, a, [write("Thing-1", 2)], metadata())
            assert result.revisions == {"Thing-1": 3} and result.positions == {"Thing": 4}
            with pytest.raises(CommandAlreadyLogged):
                again = logged[0]
                await store.append(pool, again.account_id, [write("Thing-3", 0)], again.metadata, again.log)
            # Row-level security and immutability hold on the new tables.
            async with tenant_transaction(pool, a) as connection:
                assert {r[0] for r in await connection.fetch("SELECT DISTINCT account_id FROM events")} == {a}
                assert {r[0] for r in await connection.fetch("SELECT DISTINCT account_id FROM streams")} == {
                    a
                }
            partition = await event_partition(pool, a)
            with pytest.raises(asyncpg.RestrictViolationError, match="immutable"):
                await pool.execute(f"TRUNCATE {partition}")
            with pytest.raises(asyncpg.RestrictViolationError, match="immutable"):
                await pool.execute("DELETE FROM events WHERE account_id = $1", a)
        finally:
            await pool.close()
    finally:
        await drop_database(url)


async def test_a_process_of_the_release_before_still_appends_without_p_stream_keys(
    pool: asyncpg.Pool[Any],
) -> None:
    """During a rolling upgrade an API of the release before calls the append with the arguments it
    knew; the new one defaults what it did not (p_stream_keys NULL: no key to store)."""
    account_id = await make_account(pool)
    write = StreamWrite(
        f"Order-{uuid.uuid4()}", "Order", 0, [PendingEvent("OrderCancelled", {"Reason": "r"})]
    )
    request = AppendRequest(account_id, [write], CommandMetadata(uuid.uuid4(), uuid.uuid4(), uuid.uuid4()))
    before = [name for name in APPEND_PARAMETERS if name != "p_stream_keys"]
    values = dict(zip(APPEND_PARAMETERS, batch_arguments([request]), strict=True))
    call = ", ".join(f"{name} => ${n}" for n, name in enumerate(before, 1))
    [row] = await pool.fetch(f"SELECT * FROM erp_append_batch({call})", *(values[name] for name in before))
    assert row["refusal"] is None and list(row["stream_types"]) == ["Order"]
