"""Repeatable migrations: applied after the versioned ones on every upgrade to head (Flyway's R__ scripts).

Versioned migrations (`versions/`) hold what has a history: tables, columns, roles, policies,
grants. What can simply be replaced lives beside the code that uses it and is applied from here,
whole, on every upgrade, in this order:

1. The store functions, each written once in a `.sql` file beside its caller with
   `CREATE OR REPLACE` (`STORE_FUNCTIONS`, in order: later files call earlier ones). They run
   in the versioned migrations' transaction (`env.py`).
2. The ERP model's read-model tables (`ensure_model_tables`): 50 elements per transaction, since
   one transaction for thousands of tables would overflow Postgres's lock table.
3. The columns and indexes of what read models show copied (`ModelProjection.copies_ddl`), and
   the tables of the chained read models (`queries.chained`).
4. Version 1 of each projection, live, where none is recorded (`queries.versions`).

`CREATE OR REPLACE` cannot change a function's argument list (a new list makes an overload) nor
its result type: such a change needs a versioned migration that drops the old signature first
(as `0008` does); this step then creates the new one.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import asyncpg

from commands import customisation
from commands.erp_model import ERP
from commands.store import event_store, feed, sealing, snapshots
from core.sql import sql_beside
from queries.model_tables import ensure_model_tables
from queries.projector import checkpoints
from queries.registry import CHAINED, PROJECTIONS, SHOWS
from queries.versions import ensure_live
from tenancy import fences

STORE_FUNCTIONS: tuple[tuple[ModuleType, str], ...] = (
    (fences, "fences.sql"),  # erp_write_lock (the append calls it), erp_write_unfenced, erp_fence_account
    (feed, "streams.sql"),  # erp_enter_account (the others call it), erp_load_stream, erp_find_command
    (sealing, "subject_keys.sql"),  # erp_store_subject_key (the append calls it), erp_subject_keys, ...
    (event_store, "append.sql"),  # erp_append_batch
    (snapshots, "snapshots.sql"),  # erp_load_snapshot, erp_save_snapshot
    (customisation, "customisations.sql"),  # erp_customisations
    (checkpoints, "checkpoints.sql"),  # erp_changed_pairs, erp_claim_checkpoints, erp_save_checkpoints
)
"""Each store function's `.sql` file, named by the module beside which it lives, in the order applied."""


def store_functions() -> list[str]:
    """The text of every store function file, in order."""
    return [sql_beside(str(module.__file__), name) for module, name in STORE_FUNCTIONS]


async def apply_store_functions(connection: asyncpg.Connection[Any]) -> None:
    """Create or replace every store function, in the caller's transaction."""
    for script in store_functions():
        await connection.execute(script)


async def apply_read_models(connection: asyncpg.Connection[Any]) -> None:
    """Create or extend the ERP model's read-model tables, then the columns of what they show
    copied; record version 1 of each projection if none is."""
    await ensure_model_tables(connection, ERP)
    async with connection.transaction():
        # Columns first, then the new ones filled, each after those it copies from.
        made = [(p, copy) for p in PROJECTIONS.values() for copy in await p.missing_copies(connection)]
        for projection in PROJECTIONS.values():
            if projection.copies:
                await connection.execute(projection.copies_ddl())
        owner = {id(copy): projection for projection, copy in made}
        for copy in SHOWS.in_order([copy for _, copy in made]):
            await owner[id(copy)].fill(connection, copy)
        for chained in CHAINED.values():
            await chained.ensure(connection)
    await ensure_live(connection, PROJECTIONS.values())
