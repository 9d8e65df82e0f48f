"""Each account lives in one tenant database: the catalog records which.

Revision ID: 0003
Revises: 0002
"""

from erp.migrations.helpers import run_script

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script("ALTER TABLE accounts ADD COLUMN database text NOT NULL DEFAULT 'main'")


def downgrade() -> None:
    run_script("ALTER TABLE accounts DROP COLUMN database")
