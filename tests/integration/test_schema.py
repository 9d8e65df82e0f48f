"""The schema the migrations build: each store function once, from its `.sql` file; the append's
arguments named as the function names them; and a database made by the code before the functions
moved into `.sql` files upgrades to the same schema as a fresh one."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg
from alembic.script import ScriptDirectory

from commands.store.event_store import APPEND_PARAMETERS, AppendRequest, EventStore, batch_arguments
from core.db import create_pool
from core.settings import Settings
from erp.devserver import create_database, drop_database, with_database
from erp.migrate import alembic_config, upgrade_async
from erp.migrations.repeatable import store_functions
from tests.conftest import BASE_DATABASE_URL, fresh_database, make_account
from tests.integration.test_event_store import metadata, stored, write

FIXTURES = Path(__file__).with_name("fixtures")
SCHEMA_0007 = FIXTURES / "schema_0007.sql"
"""A database at 0007 as the code before this change made it (see the file's header)."""

FUNCTIONS = {
    "erp_append_batch",
    "erp_customer_takes_party_name",
    "erp_customisations",
    "erp_enter_account",
    "erp_events_are_immutable",
    "erp_find_command",
    "erp_load_stream",
    "erp_party_gives_name",
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
    for name in ("erp_append_batch", "erp_customisations", "erp_enter_account", "erp_find_command"):
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
    old, fresh = await new_database(), await fresh_database()
    settings = Settings(database_url=old)
    try:
        connection = await asyncpg.connect(old)
        try:
            await connection.execute(SCHEMA_0007.read_text(encoding="utf-8"))
        finally:
            await connection.close()
        # Events stored by the old code, through its own append (which had no p_versions).
        pool = await create_pool(settings, min_size=1, max_size=2)
        try:
            account_id = await make_account(pool, "Before")
            old_append = [name for name in APPEND_PARAMETERS if name != "p_versions"]
            arguments = batch_arguments([AppendRequest(account_id, [write("Thing-1", 0)], metadata())])
            values = dict(zip(APPEND_PARAMETERS, arguments, strict=True))
            call = ", ".join(f"{name} => ${n}" for n, name in enumerate(old_append, 1))
            [row] = await pool.fetch(
                f"SELECT * FROM erp_append_batch({call})", *(values[name] for name in old_append)
            )
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
