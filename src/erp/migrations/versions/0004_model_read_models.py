"""Read models come from the model now (`rm_<element>`, built by `ensure_model_tables`);
events a projection cannot apply are parked instead of stopping it.

Revision ID: 0004
Revises: 0003
"""

from erp.migrations.helpers import run_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script(
        """
        DROP TABLE orders;
        CREATE TABLE parked_events (
            projection text NOT NULL,
            account_id uuid NOT NULL,
            stream_type text NOT NULL,
            sequence_number bigint NOT NULL,
            stream_id text NOT NULL,
            payload_item_name text NOT NULL,
            reason text NOT NULL,
            parked_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT parked_events_pkey PRIMARY KEY (projection, account_id, stream_type, sequence_number)
        );
        """
    )


def downgrade() -> None:
    raise NotImplementedError("the hand-written orders table is gone; rebuild read models instead")
