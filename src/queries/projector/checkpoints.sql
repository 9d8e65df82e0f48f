-- Finding a projection's work without looking at idle accounts.
--
-- Every counter row the append advances records the appending transaction (`changed`, its xid8;
-- commands/store/append.sql). A transaction a snapshot could not see has an xid at or above that
-- snapshot's xmin, so the counters changed since a projector's last look are those with
-- `changed >= horizon`, where `horizon` is the xmin of the snapshot that look read with. This
-- answers those pairs (still lagging this projection) from the `changed` index, and the new
-- horizon, from one snapshot, and starts the checkpoints they lack. Dynamic SQL, so each call is
-- planned with its own horizon (a generic plan would guess a third of the table and scan it all),
-- and each pair's checkpoint is a lookup of its own (a join let stale statistics hash them all).
CREATE OR REPLACE FUNCTION erp_changed_pairs(p_projection text, p_types text[], p_since bigint)
RETURNS TABLE (horizon bigint, account_ids uuid[], stream_types text[])
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE
        'SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint,
                coalesce(array_agg(s.account_id), ''{}''), coalesce(array_agg(s.stream_type), ''{}'')
         FROM stream_sequences s
         WHERE s.changed >= $3::text::xid8 AND s.stream_type = ANY($2)
           AND s.last_sequence > coalesce((
               SELECT c.position FROM projection_checkpoints c
               WHERE c.projection = $1 AND c.account_id = s.account_id AND c.stream_type = s.stream_type
           ), 0)'
        INTO horizon, account_ids, stream_types
        USING p_projection, p_types, p_since;
    IF cardinality(account_ids) > 0 THEN
        -- The checkpoints these pairs lack start at 0.
        EXECUTE
            'INSERT INTO projection_checkpoints (projection, account_id, stream_type, position)
             SELECT $1, w.account_id, w.stream_type, 0 FROM unnest($2, $3) AS w(account_id, stream_type)
             WHERE NOT EXISTS (
                 SELECT 1 FROM projection_checkpoints c
                 WHERE c.projection = $1 AND c.account_id = w.account_id AND c.stream_type = w.stream_type)
             ON CONFLICT DO NOTHING'
            USING p_projection, account_ids, stream_types;
    END IF;
    RETURN NEXT;
END $$;

-- Claiming and saving a batch's checkpoints (a claim first holds the projection's writer lock, shared), each an index lookup per pair. As prepared statements
-- their generic plans guessed 100 pairs and hashed the whole checkpoint table (3 ms a batch at
-- 10,000 accounts, 0.3 ms at 100); planned per call, with the arrays at hand, they stay lookups.
CREATE OR REPLACE FUNCTION erp_claim_checkpoints(p_projection text, p_accounts uuid[], p_types text[],
                                                 p_limit integer)
RETURNS TABLE (account_id uuid, stream_type text, "position" bigint, last_sequence bigint)
LANGUAGE plpgsql AS $$
BEGIN
    -- Writers of the projection's read model hold this, shared, until they commit; a version
    -- switching in (queries/blue_green.py) takes it alone, so no batch writes while it does.
    PERFORM pg_advisory_xact_lock_shared(hashtext('erp.projection:' || p_projection));
    RETURN QUERY EXECUTE
        'SELECT c.account_id, c.stream_type, c.position, s.last_sequence
         FROM unnest($2, $3) AS w(account_id, stream_type)
         JOIN projection_checkpoints c
           ON c.projection = $1 AND c.account_id = w.account_id AND c.stream_type = w.stream_type
         JOIN stream_sequences s ON s.account_id = c.account_id AND s.stream_type = c.stream_type
         WHERE s.last_sequence > c.position
         ORDER BY s.last_sequence - c.position DESC
         LIMIT $4
         FOR UPDATE OF c SKIP LOCKED'
        USING p_projection, p_accounts, p_types, p_limit;
END $$;

CREATE OR REPLACE FUNCTION erp_save_checkpoints(p_projection text, p_accounts uuid[], p_types text[],
                                                p_positions bigint[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE
        'UPDATE projection_checkpoints c SET position = p.position, updated_at = now()
         FROM unnest($2, $3, $4) AS p(account_id, stream_type, position)
         WHERE c.projection = $1 AND c.account_id = p.account_id AND c.stream_type = p.stream_type'
        USING p_projection, p_accounts, p_types, p_positions;
END $$;
