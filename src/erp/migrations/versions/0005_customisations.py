"""Per-account customisation: attributes an account adds to an element of the model.

Revision ID: 0005
Revises: 0004
"""

from erp.migrations.helpers import run_script

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script(
        """
        CREATE TABLE customisations (
            account_id uuid NOT NULL,
            element text NOT NULL,
            attribute text NOT NULL,
            type text NOT NULL,
            required boolean NOT NULL DEFAULT false,
            max_length integer,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT customisations_pkey PRIMARY KEY (account_id, element, attribute)
        );
        ALTER TABLE customisations ENABLE ROW LEVEL SECURITY;
        ALTER TABLE customisations FORCE ROW LEVEL SECURITY;
        CREATE POLICY customisations_tenant_isolation ON customisations
            USING (account_id = nullif(current_setting('erp.account_id', true), '')::uuid)
            WITH CHECK (account_id = nullif(current_setting('erp.account_id', true), '')::uuid);
        GRANT SELECT, INSERT ON customisations TO erp_tenant;
        """
    )


def downgrade() -> None:
    run_script("DROP TABLE customisations")
