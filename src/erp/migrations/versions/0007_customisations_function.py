"""Read an account's customisations in one round trip, scoped like the other store functions.

The API re-reads each account's definitions every few seconds; as an explicit
transaction that was four round trips (BEGIN, scope, SELECT, COMMIT).

Revision ID: 0007
Revises: 0006
"""

from erp.migrations.helpers import run_script

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script(
        """
        CREATE FUNCTION erp_customisations(p_account uuid)
        RETURNS SETOF customisations LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM erp_enter_account(p_account);
            RETURN QUERY SELECT * FROM customisations WHERE account_id = p_account;
        END $$;
        """
    )


def downgrade() -> None:
    run_script("DROP FUNCTION erp_customisations(uuid)")
