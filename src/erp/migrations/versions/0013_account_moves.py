"""Moving an account to another tenant database: fences, and the one way events may leave a database.

`account_fences` says, per database, which accounts do not (or not yet, or no longer) live there:
* `arriving`: a move is copying the account in; its commands are refused here until the switch;
* `leaving`: the account still lives here, but a move has fenced it: its commands are refused while
  the last of its data is copied out and its route switches (a few seconds);
* `left`: it lives elsewhere now; what is left of it here may be removed, and a command that still
  reaches this database (a stale route) is refused, never stored.

Every append takes a shared advisory lock on its account, then looks for a fence; a move fences an
account under the exclusive lock, so no append that missed the fence can commit after it.

Events stay immutable, with one exception: the rows of an account that does not live here (fence
`left` or `arriving`) may be deleted by a session that names it in `erp.purging_account`.

Revision ID: 0013
Revises: 0012
"""

from erp.migrations.helpers import run_script

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script(
        """
        CREATE TABLE account_fences (
            account_id uuid PRIMARY KEY,
            state text NOT NULL CHECK (state IN ('arriving', 'leaving', 'left')),
            other text NOT NULL,
            move_id uuid NOT NULL,
            since timestamptz NOT NULL DEFAULT now()
        );
        COMMENT ON COLUMN account_fences.other IS 'the database the account comes from or goes to';
        GRANT SELECT ON account_fences TO erp_tenant;

        CREATE OR REPLACE FUNCTION erp_events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE'
               AND current_setting('erp.purging_account', true) = OLD.account_id::text
               AND EXISTS (SELECT FROM account_fences f
                           WHERE f.account_id = OLD.account_id AND f.state IN ('left', 'arriving')) THEN
                RETURN OLD;  -- the copy of an account that does not live in this database
            END IF;
            RAISE EXCEPTION 'events are immutable: % is not allowed on the event store', TG_OP
                USING ERRCODE = 'restrict_violation';
        END $$;
        """
    )


def downgrade() -> None:
    run_script(
        """
        CREATE OR REPLACE FUNCTION erp_events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'events are immutable: % is not allowed on the event store', TG_OP
                USING ERRCODE = 'restrict_violation';
        END $$;
        DROP TABLE account_fences;
        """
    )
