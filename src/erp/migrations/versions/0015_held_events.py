"""Parked events hold back their stream: `held_behind` tells a refused event (NULL) from a later
event of the same stream set aside behind it (the refused one's SequenceNumber).

Events parked before this version were refused themselves (later events of their streams were
applied past them then); from now on they hold back their streams' new events, as a refused event
does, until an operator retries or skips them.

Revision ID: 0015
Revises: 0014
"""

from erp.migrations.helpers import run_script

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script(
        """
        ALTER TABLE parked_events ADD COLUMN held_behind bigint;
        CREATE INDEX parked_events_stream
            ON parked_events (projection, account_id, stream_id, sequence_number);
        """
    )


def downgrade() -> None:
    run_script(
        """
        DROP INDEX parked_events_stream;
        ALTER TABLE parked_events DROP COLUMN held_behind;
        """
    )
