"""Event store, tenant catalog, projector checkpoints and the orders read model.

Row-level security: every tenant table carries account_id and a policy that
matches it against the transaction's `erp.account_id` setting. Tenant
transactions run as the `erp_tenant` role, which has no BYPASSRLS, so even a
query that forgets its filter sees only its own account.

Revision ID: 0001
Revises:
"""

from erp.migrations.helpers import run_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TENANT_TABLES = (
    "accounts",
    "api_keys",
    "events",
    "streams",
    "stream_sequences",
    "command_log",
    "orders",
    "projection_checkpoints",
)

UPGRADE = """
CREATE TABLE accounts (
    account_id uuid PRIMARY KEY,
    name text NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    key_hash bytea PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (account_id),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz
);

CREATE TABLE events (
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
) PARTITION BY LIST (account_id);

CREATE TABLE streams (
    account_id uuid NOT NULL,
    stream_id text NOT NULL,
    stream_type text NOT NULL,
    revision integer NOT NULL,
    CONSTRAINT streams_pkey PRIMARY KEY (account_id, stream_id)
);

CREATE TABLE stream_sequences (
    account_id uuid NOT NULL,
    stream_type text NOT NULL,
    last_sequence bigint NOT NULL,
    CONSTRAINT stream_sequences_pkey PRIMARY KEY (account_id, stream_type)
);

CREATE TABLE command_log (
    account_id uuid NOT NULL,
    command_id uuid NOT NULL,
    command_name text NOT NULL,
    request_hash bytea NOT NULL,
    result jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT command_log_pkey PRIMARY KEY (account_id, command_id)
);

CREATE TABLE projection_checkpoints (
    projection text NOT NULL,
    account_id uuid NOT NULL,
    stream_type text NOT NULL,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT projection_checkpoints_pkey PRIMARY KEY (projection, account_id, stream_type)
);

CREATE TABLE orders (
    account_id uuid NOT NULL,
    order_id uuid NOT NULL,
    customer_name text NOT NULL,
    status text NOT NULL,
    total numeric(18, 2) NOT NULL,
    order_lines jsonb NOT NULL,
    cancel_reason text,
    placed_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT orders_pkey PRIMARY KEY (account_id, order_id)
);
CREATE INDEX orders_customer_idx ON orders (account_id, customer_name);

-- Immutability: stored events never change.
CREATE FUNCTION erp_events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable: % is not allowed on the event store', TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER events_immutable BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION erp_events_are_immutable();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION erp_events_are_immutable();

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'erp_tenant') THEN
        CREATE ROLE erp_tenant NOLOGIN NOBYPASSRLS;
    END IF;
END $$;
GRANT erp_tenant TO CURRENT_USER;
GRANT USAGE ON SCHEMA public TO erp_tenant;
GRANT SELECT ON accounts, api_keys, orders, projection_checkpoints TO erp_tenant;
GRANT SELECT, INSERT ON events, command_log TO erp_tenant;
GRANT SELECT, INSERT, UPDATE ON streams, stream_sequences TO erp_tenant;
"""

POLICY = """
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
CREATE POLICY {table}_tenant_isolation ON {table}
    USING (account_id = nullif(current_setting('erp.account_id', true), '')::uuid)
    WITH CHECK (account_id = nullif(current_setting('erp.account_id', true), '')::uuid);
"""


def upgrade() -> None:
    run_script(UPGRADE + "".join(POLICY.format(table=t) for t in TENANT_TABLES))


def downgrade() -> None:
    run_script(
        "DROP TABLE orders, projection_checkpoints, command_log, stream_sequences, streams, events, "
        "api_keys, accounts CASCADE; "
        "DROP FUNCTION erp_events_are_immutable();"
    )
