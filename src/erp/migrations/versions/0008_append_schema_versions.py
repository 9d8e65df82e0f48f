"""The append stores each event's schema version: `erp_append_batch` takes `p_versions smallint[]`.

`events.schema_version` was always left at its default (1). The store now passes the version
each event's name is at today (`Upcasters.version`), so an event stored after a shape change is
not upcast again when read. CREATE OR REPLACE cannot change a function's argument list (it would
make an overload), so this drops the old signature; the repeatable step that follows every
upgrade creates the new one from `commands/store/append.sql`, in the same transaction.

Revision ID: 0008
Revises: 0007
"""

from erp.migrations.helpers import run_script

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script(
        "DROP FUNCTION IF EXISTS erp_append_batch(uuid[], uuid[], uuid[], uuid[], jsonb[], text[], bytea[], "
        "jsonb[], integer[], text[], text[], integer[], integer[], integer[], text[], integer[], text[], "
        "text[], jsonb[])"
    )


def downgrade() -> None:
    raise NotImplementedError(
        "the append without schema versions is gone: each store function is written once, for head "
        "(commands/store/append.sql)"
    )
