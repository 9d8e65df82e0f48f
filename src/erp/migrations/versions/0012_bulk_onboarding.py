"""Bulk onboarding, and placing an account at a cost that does not grow with the accounts.

* `account_imports`: one row per bulk import (`erp accounts import`, POST /accounts/import); its
  accounts carry its id (`accounts.import_id`), so one workflow onboards them all.
* `account_counts`: how many accounts each tenant database holds, kept by statement triggers on
  `accounts` (a COPY of 10,000 accounts updates each count once). Placing a new account used to
  count every account (`GROUP BY database`).
* The onboarding sweep looks for accounts still Onboarding, and imports not finished, through
  partial indexes: the cost is what is still onboarding, not every account.

Revision ID: 0012
Revises: 0011
"""

from erp.migrations.helpers import run_script

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script(
        """
        CREATE TABLE account_imports (
            import_id uuid PRIMARY KEY,
            accounts integer NOT NULL CHECK (accounts > 0),
            created_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz
        );
        CREATE INDEX account_imports_unfinished_idx ON account_imports (created_at) WHERE finished_at IS NULL;
        ALTER TABLE accounts ADD COLUMN import_id uuid REFERENCES account_imports (import_id);
        CREATE INDEX accounts_import_idx ON accounts (import_id, status) WHERE import_id IS NOT NULL;
        CREATE INDEX accounts_onboarding_idx ON accounts (created_at) WHERE status = 'Onboarding';

        CREATE TABLE account_counts (
            database text PRIMARY KEY,
            accounts bigint NOT NULL CHECK (accounts >= 0)
        );
        INSERT INTO account_counts (database, accounts)
        SELECT database, count(*) FROM accounts GROUP BY database;

        CREATE FUNCTION erp_count_accounts() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                INSERT INTO account_counts AS c (database, accounts)
                SELECT database, count(*) FROM new_rows GROUP BY database ORDER BY database
                ON CONFLICT (database) DO UPDATE SET accounts = c.accounts + EXCLUDED.accounts;
            ELSIF TG_OP = 'DELETE' THEN
                UPDATE account_counts c SET accounts = c.accounts - gone.n
                FROM (SELECT database, count(*) AS n FROM old_rows GROUP BY database) gone
                WHERE c.database = gone.database;
            ELSE  -- accounts moved to another database (a status change moves nothing)
                UPDATE account_counts c SET accounts = c.accounts - gone.n
                FROM (SELECT o.database, count(*) AS n FROM old_rows o JOIN new_rows n USING (account_id)
                      WHERE o.database <> n.database GROUP BY o.database) gone
                WHERE c.database = gone.database;
                INSERT INTO account_counts AS c (database, accounts)
                SELECT n.database, count(*) FROM old_rows o JOIN new_rows n USING (account_id)
                WHERE o.database <> n.database GROUP BY n.database ORDER BY n.database
                ON CONFLICT (database) DO UPDATE SET accounts = c.accounts + EXCLUDED.accounts;
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER accounts_counted_on_insert AFTER INSERT ON accounts
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION erp_count_accounts();
        CREATE TRIGGER accounts_counted_on_update AFTER UPDATE ON accounts
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION erp_count_accounts();
        CREATE TRIGGER accounts_counted_on_delete AFTER DELETE ON accounts
            REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION erp_count_accounts();
        """
    )


def downgrade() -> None:
    run_script(
        """
        DROP TRIGGER accounts_counted_on_insert ON accounts;
        DROP TRIGGER accounts_counted_on_update ON accounts;
        DROP TRIGGER accounts_counted_on_delete ON accounts;
        DROP FUNCTION erp_count_accounts();
        DROP TABLE account_counts;
        DROP INDEX accounts_onboarding_idx;
        DROP INDEX accounts_import_idx;
        ALTER TABLE accounts DROP COLUMN import_id;
        DROP TABLE account_imports;
        """
    )
