"""The data subjects' keys (`commands.store.sealing`): personal data in events is sealed with its
subject's key, and erasing the subject deletes the key (crypto-shredding). An erased subject's row
stays with its key NULL and `erased_at` set: the record of the erasure, without the data.

Under row-level security like the events; the tenant role may make keys and erase them, never
delete the record.

Revision ID: 0017
Revises: 0016
"""

from erp.migrations.helpers import run_script

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script(
        """
        CREATE TABLE subject_keys (
            account_id uuid NOT NULL,
            subject text NOT NULL,
            key bytea,
            created_at timestamptz NOT NULL DEFAULT now(),
            erased_at timestamptz,
            CONSTRAINT subject_keys_pkey PRIMARY KEY (account_id, subject),
            CONSTRAINT subject_keys_erased CHECK ((key IS NULL) = (erased_at IS NOT NULL))
        );
        ALTER TABLE subject_keys ENABLE ROW LEVEL SECURITY;
        ALTER TABLE subject_keys FORCE ROW LEVEL SECURITY;
        CREATE POLICY subject_keys_tenant_isolation ON subject_keys
            USING (account_id = nullif(current_setting('erp.account_id', true), '')::uuid)
            WITH CHECK (account_id = nullif(current_setting('erp.account_id', true), '')::uuid);
        GRANT SELECT, INSERT, UPDATE ON subject_keys TO erp_tenant;
        """
    )


def downgrade() -> None:
    run_script("DROP TABLE subject_keys")
