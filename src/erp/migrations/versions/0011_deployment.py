"""A deployment's id, made once: what keeps two deployments apart on one Temporal server.

The catalog database's row names the deployment (`core.deployment`): its workflow ids and its
default task queue start with it. Every tenant database gets the table; only `main`'s row is read.

Revision ID: 0011
Revises: 0010
"""

from erp.migrations.helpers import run_script

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script(
        """
        CREATE TABLE deployment (
            id uuid NOT NULL DEFAULT gen_random_uuid(),
            created_at timestamptz NOT NULL DEFAULT now(),
            one boolean NOT NULL DEFAULT true PRIMARY KEY CHECK (one)
        );
        INSERT INTO deployment DEFAULT VALUES;
        """
    )


def downgrade() -> None:
    run_script("DROP TABLE deployment")
