"""Projection versions: each read model has a live version, and may have one being built beside it
(blue/green) and retired ones waiting to be dropped (`queries.versions`). Aborted and dropped ones
stay as rows, so a version number is never used twice.

The read models as they are become version 1 of each projection, with its shape recorded by the
repeatable step that follows.

Revision ID: 0016
Revises: 0015
"""

from erp.migrations.helpers import run_script

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script(
        """
        CREATE TABLE projection_versions (
            projection text NOT NULL,
            version integer NOT NULL,
            state text NOT NULL CHECK (state IN ('building', 'live', 'retired', 'aborted', 'dropped')),
            shape text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            live_at timestamptz,
            retired_at timestamptz,
            CONSTRAINT projection_versions_pkey PRIMARY KEY (projection, version)
        );
        CREATE UNIQUE INDEX projection_versions_one_live ON projection_versions (projection)
            WHERE state = 'live';
        CREATE UNIQUE INDEX projection_versions_one_building ON projection_versions (projection)
            WHERE state = 'building';
        """
    )


def downgrade() -> None:
    run_script("DROP TABLE projection_versions;")
