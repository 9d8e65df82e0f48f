"""Group commit: one statement appends for many accounts, each append atomic on its own.

`erp_append_batch` replaced `erp_append`. Its body lives beside its caller, in
`commands/store/append.sql` (what it does and why is written there), applied with CREATE OR
REPLACE by the repeatable step of every upgrade (`erp/migrations/repeatable.py`). This revision
only drops the function it replaced, which a database made before that change still has.

Revision ID: 0006
Revises: 0005
"""

from erp.migrations.helpers import run_script

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script(
        "DROP FUNCTION IF EXISTS erp_append(uuid, text[], text[], integer[], integer[], text[], integer[], "
        "text[], text[], jsonb[], uuid, uuid, uuid, jsonb, text, bytea, jsonb)"
    )


def downgrade() -> None:
    raise NotImplementedError(
        "erp_append is gone: each store function is written once, for head (commands/store/*.sql)"
    )
