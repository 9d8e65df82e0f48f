"""Event-store functions: enter an account, load a stream and append in one round trip each.

The functions this revision introduced (`erp_enter_account`, `erp_load_stream`,
`erp_find_command`, and the single-stream `erp_append` that 0006 replaced) now live in `.sql`
files beside the code that calls them (`commands/store/streams.sql`, `append.sql`), written once
and applied with CREATE OR REPLACE by the repeatable step of every upgrade
(`erp/migrations/repeatable.py`). This revision changes nothing itself any more.

Revision ID: 0002
Revises: 0001
"""

from erp.migrations.helpers import run_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing: the store functions come from the repeatable step."""


def downgrade() -> None:
    run_script(
        """
        DROP FUNCTION IF EXISTS erp_find_command(uuid, uuid);
        DROP FUNCTION IF EXISTS erp_load_stream(uuid, text, integer);
        DROP FUNCTION IF EXISTS erp_enter_account(uuid);
        """
    )
