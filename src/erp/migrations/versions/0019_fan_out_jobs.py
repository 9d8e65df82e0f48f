"""Fan-out jobs (`queries.fan_out_jobs`): copies of another read model's data left to refresh, in
chunks, each with its cursor (the last row done) and the earliest position it has to show. The
rows a read model's batches changed, for the read models chained to it (`queries.chained`). The
hand-written customer-name triggers go: the copy of a party's name onto its customers is declared
in the model now (`commands.erp_model.read_models`) and refreshed by the projection engine.

Revision ID: 0019
Revises: 0018
"""

from erp.migrations.helpers import run_script

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script(
        """
        CREATE TABLE fan_out_jobs (
            projection text NOT NULL,
            copy text NOT NULL,
            account_id uuid NOT NULL,
            source_id uuid NOT NULL,
            stream_type text NOT NULL,
            position bigint NOT NULL,
            cursor_at timestamptz,
            cursor_id uuid,
            rows bigint NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT fan_out_jobs_pkey PRIMARY KEY (projection, account_id, copy, source_id, stream_type)
        );
        CREATE INDEX fan_out_jobs_turn_idx ON fan_out_jobs (projection, updated_at);
        CREATE INDEX fan_out_jobs_position_idx
            ON fan_out_jobs (projection, account_id, stream_type, position);
        CREATE TABLE read_model_changes (
            projection text NOT NULL,
            account_id uuid NOT NULL,
            row_id uuid NOT NULL,
            stream_type text NOT NULL,
            position bigint NOT NULL,
            changed xid8 NOT NULL DEFAULT pg_current_xact_id(),
            CONSTRAINT read_model_changes_pkey PRIMARY KEY (projection, account_id, row_id)
        );
        CREATE INDEX read_model_changes_changed_idx ON read_model_changes (projection, changed);
        CREATE INDEX read_model_changes_position_idx
            ON read_model_changes (projection, account_id, stream_type, position);
        DO $$
        BEGIN
            IF to_regclass('rm_customer') IS NOT NULL THEN
                DROP TRIGGER IF EXISTS rm_customer_takes_party_name ON rm_customer;
            END IF;
            IF to_regclass('rm_person') IS NOT NULL THEN
                DROP TRIGGER IF EXISTS rm_person_gives_name ON rm_person;
            END IF;
            IF to_regclass('rm_organisation') IS NOT NULL THEN
                DROP TRIGGER IF EXISTS rm_organisation_gives_name ON rm_organisation;
            END IF;
        END $$;
        DROP FUNCTION IF EXISTS erp_customer_takes_party_name();
        DROP FUNCTION IF EXISTS erp_party_gives_name();
        """
    )


def downgrade() -> None:
    run_script("DROP TABLE read_model_changes; DROP TABLE fan_out_jobs")
