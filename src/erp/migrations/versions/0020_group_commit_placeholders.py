"""Group commit within one account: the tenant role may delete an empty stream or counter row, and
nothing else of them.

A batch may carry several appends of one account (`commands.store.group_commit`). Before the
first of them, `erp_append_batch` takes every row lock the account's appends need, in the global
order (streams by id, then counters by stream type), so that the appends, run in arrival order,
never take a lock out of that order. A stream or counter that does not exist yet is locked by
inserting it empty (revision 0, last sequence 0): a placeholder. The placeholders still empty
once the account's appends are done (their appends were refused) are deleted before commit, so
they are never seen. Revision 0 and last sequence 0 mean "no events": a restrictive policy lets
the tenant role delete such rows only, so no tenant session can drop a stream that has events.

The policy applies to every role with the tenant role's privileges, the owner included: 0001
grants `erp_tenant` to the migrating user, and the tables FORCE row-level security. A move's
purge (`tenancy.moving.purge_account`, which deletes an account's counters and streams as the
pool's user, without switching roles) is unaffected only because that user bypasses row-level
security (a superuser or BYPASSRLS, as the mover's COPY already requires), not because the
policy names another role.

Revision ID: 0020
Revises: 0019
"""

from erp.migrations.helpers import run_script

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script(
        """
        CREATE POLICY streams_delete_only_empty ON streams AS RESTRICTIVE FOR DELETE TO erp_tenant
            USING (revision = 0);
        CREATE POLICY stream_sequences_delete_only_empty ON stream_sequences
            AS RESTRICTIVE FOR DELETE TO erp_tenant USING (last_sequence = 0);
        GRANT DELETE ON streams, stream_sequences TO erp_tenant;
        """
    )


def downgrade() -> None:
    run_script(
        """
        REVOKE DELETE ON streams, stream_sequences FROM erp_tenant;
        DROP POLICY stream_sequences_delete_only_empty ON stream_sequences;
        DROP POLICY streams_delete_only_empty ON streams;
        """
    )
