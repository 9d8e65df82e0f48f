-- Snapshots of long streams (commands/store/snapshots.py): an element's state at a revision, a cache
-- beside the stream. Applied on every upgrade by the migrations' repeatable step with CREATE OR
-- REPLACE; each runs scoped to its account (erp_enter_account, streams.sql), under row-level security.

-- The stream's latest snapshot of this shape, if any.
CREATE OR REPLACE FUNCTION erp_load_snapshot(p_account uuid, p_stream_id text, p_shape text)
RETURNS TABLE (revision integer, state jsonb) LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    PERFORM erp_enter_account(p_account);
    RETURN QUERY
        SELECT s.revision, s.state FROM snapshots s
        WHERE s.account_id = p_account AND s.stream_id = p_stream_id AND s.shape = p_shape;
END $$;

-- Keeps the snapshot unless the stream has one of the same shape at a later revision (two processes
-- may take snapshots of one stream at once; either is right at its revision).
CREATE OR REPLACE FUNCTION erp_save_snapshot(p_account uuid, p_stream_id text, p_revision integer,
                                             p_shape text, p_state jsonb)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM erp_enter_account(p_account);
    INSERT INTO snapshots AS s (account_id, stream_id, revision, shape, state)
    VALUES (p_account, p_stream_id, p_revision, p_shape, p_state)
    ON CONFLICT (account_id, stream_id) DO UPDATE
        SET revision = EXCLUDED.revision, shape = EXCLUDED.shape, state = EXCLUDED.state,
            taken_at = now()
        WHERE s.shape <> EXCLUDED.shape OR s.revision < EXCLUDED.revision;
END $$;
