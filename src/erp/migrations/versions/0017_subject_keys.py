"""The data subjects' keys (`commands.store.sealing`): personal data in events is sealed with its
subject's key, and erasing the subject deletes the key (crypto-shredding). An erased subject's row
stays with its key NULL and `erased_at` set: the record of the erasure, without the data.

Under row-level security like the events; the tenant role may make keys and erase them, never
delete the record.

The append stores a new stream's subject's key with its events: `erp_append_batch` takes
`p_stream_keys bytea[]` (last, NULL by default, so a process of the release before still appends).
CREATE OR REPLACE cannot add an argument (it would make an overload), so this drops the old
signature; the repeatable step that follows creates the new one, in the same transaction.

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
        DROP FUNCTION IF EXISTS erp_append_batch(uuid[], uuid[], uuid[], uuid[], jsonb[], text[],
            bytea[], jsonb[], integer[], text[], text[], integer[], integer[], integer[], text[],
            integer[], text[], text[], jsonb[], smallint[]);
        """
    )


def downgrade() -> None:
    raise NotImplementedError(
        "events sealed with these keys cannot be read without them, and the append without "
        "p_stream_keys is gone (each store function is written once, for head)"
    )
