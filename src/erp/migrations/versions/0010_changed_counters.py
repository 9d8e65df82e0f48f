"""Finding work costs what there is to do: each sequence counter records the transaction that last
advanced it (`stream_sequences.changed`, an xid8), indexed.

A projector used to find lagging (account, stream type) pairs by comparing every counter with its
checkpoint on each batch: a cost that grew with all accounts, idle ones included. Now it asks the
index for the counters changed by transactions its last look could not see (`changed` at or above
that look's snapshot xmin), so idle accounts cost nothing. Rows from before this migration say 0;
a projector looks at every counter once when it starts.

Revision ID: 0010
Revises: 0009
"""

from erp.migrations.helpers import run_script

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script(
        """
        ALTER TABLE stream_sequences ADD COLUMN changed xid8 NOT NULL DEFAULT '0';
        CREATE INDEX stream_sequences_changed_idx ON stream_sequences (changed);
        """
    )


def downgrade() -> None:
    run_script("DROP INDEX stream_sequences_changed_idx; ALTER TABLE stream_sequences DROP COLUMN changed")
