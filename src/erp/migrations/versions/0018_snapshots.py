"""Snapshots of long streams (`commands.store.snapshots`): per stream the latest one, an element's
state at a revision with the shape of the model that took it. A cache beside the events: dropping
every row changes no answer.

Revision ID: 0018
Revises: 0017
"""

from erp.migrations.helpers import run_script

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script(
        """
        CREATE TABLE snapshots (
            account_id uuid NOT NULL,
            stream_id text NOT NULL,
            revision integer NOT NULL,
            shape text NOT NULL,
            state jsonb NOT NULL,
            taken_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT snapshots_pkey PRIMARY KEY (account_id, stream_id)
        );
        ALTER TABLE snapshots ENABLE ROW LEVEL SECURITY;
        ALTER TABLE snapshots FORCE ROW LEVEL SECURITY;
        CREATE POLICY snapshots_tenant_isolation ON snapshots
            USING (account_id = nullif(current_setting('erp.account_id', true), '')::uuid)
            WITH CHECK (account_id = nullif(current_setting('erp.account_id', true), '')::uuid);
        GRANT SELECT, INSERT, UPDATE ON snapshots TO erp_tenant;
        """
    )


def downgrade() -> None:
    run_script("DROP TABLE snapshots")
