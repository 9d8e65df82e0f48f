"""Event-store functions: enter an account, load a stream and append in one round trip each.

Each function first scopes the transaction to the account (role `erp_tenant`
plus `erp.account_id`), so row-level security applies to everything it does.
A single `SELECT erp_append(...)` is its own transaction: streams are checked
and advanced, sequence numbers drawn, events and the command log written, and
all of it commits or none of it does.

Revision ID: 0002
Revises: 0001
"""

from erp.migrations.helpers import run_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = """
-- Scopes the transaction to one account. A transaction already scoped to another
-- account is refused: a store call must never widen what the rest of it can see.
CREATE FUNCTION erp_enter_account(p_account uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_current text := coalesce(current_setting('erp.account_id', true), '');
BEGIN
    IF v_current NOT IN ('', p_account::text) THEN
        RAISE EXCEPTION 'this transaction belongs to account %, not %', v_current, p_account
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SET LOCAL ROLE erp_tenant;
    PERFORM set_config('erp.account_id', p_account::text, true);
END $$;

CREATE FUNCTION erp_load_stream(p_account uuid, p_stream_id text, p_after integer)
RETURNS SETOF events LANGUAGE plpgsql AS $$
BEGIN
    PERFORM erp_enter_account(p_account);
    RETURN QUERY
        SELECT * FROM events
        WHERE account_id = p_account AND stream_id = p_stream_id AND stream_revision > p_after
        ORDER BY stream_revision;
END $$;

CREATE FUNCTION erp_find_command(p_account uuid, p_command_id uuid)
RETURNS SETOF command_log LANGUAGE plpgsql AS $$
BEGIN
    PERFORM erp_enter_account(p_account);
    RETURN QUERY SELECT * FROM command_log WHERE account_id = p_account AND command_id = p_command_id;
END $$;

"""

APPEND = """
-- Streams come sorted by id and events in stream order; both orders are fixed so
-- that concurrent appends lock rows in the same order and never deadlock.
-- A stale expected revision raises SQLSTATE ER409 with the details as JSON.
CREATE FUNCTION erp_append(
    p_account uuid,
    p_stream_ids text[], p_stream_types text[], p_expected integer[], p_counts integer[],
    p_event_stream_ids text[], p_event_revisions integer[], p_event_types text[],
    p_names text[], p_payloads jsonb[],
    p_command_id uuid, p_correlation_id uuid, p_causation_id uuid, p_trace_context jsonb,
    p_command_name text, p_request_hash bytea, p_result jsonb
) RETURNS TABLE (stream_type text, last_sequence bigint) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    i integer;
    v_actual integer;
    v_type text;
    v_count integer;
    v_last bigint;
    v_types text[] := '{}';
    v_lasts bigint[] := '{}';
    v_firsts bigint[] := '{}';
BEGIN
    PERFORM erp_enter_account(p_account);
    FOR i IN 1 .. coalesce(array_length(p_stream_ids, 1), 0) LOOP
        IF p_expected[i] = 0 THEN
            INSERT INTO streams (account_id, stream_id, stream_type, revision)
            VALUES (p_account, p_stream_ids[i], p_stream_types[i], p_counts[i])
            ON CONFLICT (account_id, stream_id) DO NOTHING;
        ELSE
            UPDATE streams s SET revision = s.revision + p_counts[i]
            WHERE s.account_id = p_account AND s.stream_id = p_stream_ids[i]
              AND s.revision = p_expected[i];
        END IF;
        IF NOT FOUND THEN
            SELECT s.revision INTO v_actual FROM streams s
            WHERE s.account_id = p_account AND s.stream_id = p_stream_ids[i];
            RAISE EXCEPTION 'stream % was expected at revision % but is at revision %',
                    p_stream_ids[i], p_expected[i], coalesce(v_actual, 0)
                USING ERRCODE = 'ER409',
                      DETAIL = json_build_object('StreamId', p_stream_ids[i],
                                                 'Expected', p_expected[i],
                                                 'Actual', coalesce(v_actual, 0))::text;
        END IF;
    END LOOP;

    FOR v_type, v_count IN
        SELECT x.t, sum(x.c)::integer FROM unnest(p_stream_types, p_counts) AS x(t, c)
        GROUP BY x.t ORDER BY x.t
    LOOP
        INSERT INTO stream_sequences AS s (account_id, stream_type, last_sequence)
        VALUES (p_account, v_type, v_count)
        ON CONFLICT (account_id, stream_type)
        DO UPDATE SET last_sequence = s.last_sequence + EXCLUDED.last_sequence
        RETURNING s.last_sequence INTO v_last;
        v_types := v_types || v_type;
        v_lasts := v_lasts || v_last;
        v_firsts := v_firsts || (v_last - v_count + 1);
    END LOOP;

    INSERT INTO events (account_id, stream_id, stream_revision, payload_item_name, payload,
                        stream_type, sequence_number, command_id, correlation_id, causation_id,
                        trace_context)
    SELECT p_account, e.stream_id, e.revision, e.name, e.payload, e.stream_type,
           f.first_sequence + row_number() OVER (PARTITION BY e.stream_type ORDER BY e.ord) - 1,
           p_command_id, p_correlation_id, p_causation_id, p_trace_context
    FROM unnest(p_event_stream_ids, p_event_revisions, p_event_types, p_names, p_payloads)
         WITH ORDINALITY AS e(stream_id, revision, stream_type, name, payload, ord)
    JOIN unnest(v_types, v_firsts) AS f(stream_type, first_sequence) USING (stream_type);

    IF p_command_name IS NOT NULL THEN
        INSERT INTO command_log (account_id, command_id, command_name, request_hash, result)
        SELECT p_account, p_command_id, p_command_name, p_request_hash,
               p_result || jsonb_build_object('Positions', coalesce(jsonb_object_agg(t, l), '{}'))
        FROM unnest(v_types, v_lasts) AS x(t, l);
    END IF;

    RETURN QUERY SELECT * FROM unnest(v_types, v_lasts);
END $$;
"""

DOWNGRADE = """
DROP FUNCTION erp_append(uuid, text[], text[], integer[], integer[], text[], integer[], text[], text[],
                         jsonb[], uuid, uuid, uuid, jsonb, text, bytea, jsonb);
DROP FUNCTION erp_find_command(uuid, uuid);
DROP FUNCTION erp_load_stream(uuid, text, integer);
DROP FUNCTION erp_enter_account(uuid);
"""


def upgrade() -> None:
    run_script(UPGRADE + APPEND)


def downgrade() -> None:
    run_script(DOWNGRADE)
