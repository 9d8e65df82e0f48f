"""Read an account's customisations in one round trip, scoped like the other store functions.

`erp_customisations` lives beside its caller, in `commands/customisations.sql`, applied with
CREATE OR REPLACE by the repeatable step of every upgrade (`erp/migrations/repeatable.py`). This
revision changes nothing itself any more.

Revision ID: 0007
Revises: 0006
"""

from erp.migrations.helpers import run_script

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing: erp_customisations comes from the repeatable step."""


def downgrade() -> None:
    run_script("DROP FUNCTION IF EXISTS erp_customisations(uuid)")
