"""A fixed number of partitions: events, streams and the command log are partitioned by HASH (account_id).

One LIST partition per account made every statement that is not pruned when planned (the
projector's read after its checkpoints) lock every partition: at 10,000 accounts Postgres ran out
of its lock table (`out of shared memory`) for every tenant at once. Now a tenant database has
`erp.partitions` partitions (ERP_PARTITIONS when the migration runs, 16 by default) of each table
that grows with events; an account lives in exactly one of them, chosen by its AccountId, and any
statement touches at most that many, however many accounts there are. Row-level security,
the immutability triggers and the grants are as before; onboarding needs no DDL any more.

The rows move in this migration's one transaction, unchanged (every column copied as it is).
The store functions that return these tables' row types are dropped first and created again by
the repeatable step that follows (`erp/migrations/repeatable.py`).

Revision ID: 0009
Revises: 0008
"""

from alembic import context

from erp.migrations.helpers import run_script

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DEFAULT_PARTITIONS = 16
MAX_PARTITIONS = 64
"""A projector batch locks every partition of `events` (and its two indexes): 64 keep that far
inside the default lock table (max_locks_per_transaction 64 x 100 connections)."""

POLICY = """
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
CREATE POLICY {table}_tenant_isolation ON {table}
    USING (account_id = nullif(current_setting('erp.account_id', true), '')::uuid)
    WITH CHECK (account_id = nullif(current_setting('erp.account_id', true), '')::uuid);
"""

TABLES = {
    "events": (
        """
        account_id uuid NOT NULL,
        stream_id text NOT NULL,
        stream_revision integer NOT NULL,
        payload_item_name text NOT NULL,
        payload jsonb NOT NULL,
        stream_type text NOT NULL,
        sequence_number bigint NOT NULL,
        commit_time timestamptz NOT NULL DEFAULT now(),
        schema_version smallint NOT NULL DEFAULT 1,
        command_id uuid NOT NULL,
        correlation_id uuid NOT NULL,
        causation_id uuid NOT NULL,
        trace_context jsonb NOT NULL DEFAULT '{}',
        CONSTRAINT events_pkey PRIMARY KEY (account_id, stream_id, stream_revision),
        CONSTRAINT events_account_type_sequence_key UNIQUE (account_id, stream_type, sequence_number),
        CONSTRAINT events_revision_positive CHECK (stream_revision > 0),
        CONSTRAINT events_sequence_positive CHECK (sequence_number > 0)
        """,
        ("events_pkey", "events_account_type_sequence_key", "events_revision_positive",
         "events_sequence_positive"),
        "GRANT SELECT, INSERT ON events TO erp_tenant;",
    ),
    "streams": (
        """
        account_id uuid NOT NULL,
        stream_id text NOT NULL,
        stream_type text NOT NULL,
        revision integer NOT NULL,
        CONSTRAINT streams_pkey PRIMARY KEY (account_id, stream_id)
        """,
        ("streams_pkey",),
        "GRANT SELECT, INSERT, UPDATE ON streams TO erp_tenant;",
    ),
    "command_log": (
        """
        account_id uuid NOT NULL,
        command_id uuid NOT NULL,
        command_name text NOT NULL,
        request_hash bytea NOT NULL,
        result jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT command_log_pkey PRIMARY KEY (account_id, command_id)
        """,
        ("command_log_pkey",),
        "GRANT SELECT, INSERT ON command_log TO erp_tenant;",
    ),
}  # fmt: skip


def partitions() -> int:
    """How many partitions each table gets: the `erp.partitions` option (from ERP_PARTITIONS)."""
    count = int(context.config.get_main_option("erp.partitions") or DEFAULT_PARTITIONS)
    if not 1 <= count <= MAX_PARTITIONS:
        raise ValueError(f"ERP_PARTITIONS must be from 1 to {MAX_PARTITIONS}, got {count}")
    return count


def partition_name(table: str, remainder: int) -> str:
    return f"{table}_p{remainder:02d}"


def _move(table: str, columns: str, constraints: tuple[str, ...], grant: str, count: int) -> str:
    old = f"{table}_before_0009"
    script = [f"ALTER TABLE {table} RENAME TO {old};"]
    script += [f"ALTER TABLE {old} RENAME CONSTRAINT {name} TO {name}_before_0009;" for name in constraints]
    script.append(f"CREATE TABLE {table} ({columns}) PARTITION BY HASH (account_id);")
    for remainder in range(count):
        script.append(
            f"CREATE TABLE {partition_name(table, remainder)} PARTITION OF {table} "
            f"FOR VALUES WITH (MODULUS {count}, REMAINDER {remainder});"
        )
    names = ", ".join(
        line.split()[0] for line in columns.strip().splitlines() if not line.strip().startswith("CONSTRAINT")
    )
    script.append(f"INSERT INTO {table} ({names}) SELECT {names} FROM {old};")
    script.append(f"DROP TABLE {old};")
    script.append(POLICY.format(table=table))
    script.append(grant)
    return "\n".join(script)


def upgrade() -> None:
    count = partitions()
    script = [
        # They return these tables' row types; the repeatable step creates them again.
        "DROP FUNCTION IF EXISTS erp_load_stream(uuid, text, integer);",
        "DROP FUNCTION IF EXISTS erp_find_command(uuid, uuid);",
    ]
    for table, (columns, constraints, grant) in TABLES.items():
        script.append(_move(table, columns, constraints, grant, count))
    # Immutability: row triggers on a partitioned table apply to its partitions; TRUNCATE's
    # statement trigger does not, so each partition gets its own.
    script.append(
        "CREATE TRIGGER events_immutable BEFORE UPDATE OR DELETE ON events "
        "FOR EACH ROW EXECUTE FUNCTION erp_events_are_immutable();"
    )
    for name in ["events", *(partition_name("events", r) for r in range(count))]:
        script.append(
            f"CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON {name} "
            "FOR EACH STATEMENT EXECUTE FUNCTION erp_events_are_immutable();"
        )
    run_script("\n".join(script))


def downgrade() -> None:
    raise NotImplementedError("one partition per account does not hold at the seed's 10,000 accounts")
