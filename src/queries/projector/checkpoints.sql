-- Finding a projection's work without looking at idle accounts.
--
-- Every counter row the append advances records the appending transaction (`changed`, its xid8;
-- commands/store/append.sql). A transaction a snapshot could not see has an xid at or above that
-- snapshot's xmin, so the counters changed since a projector's last look are those with
-- `changed >= horizon`, where `horizon` is the xmin of the snapshot that look read with. This
-- answers those pairs (still lagging this projection) from the `changed` index, and the new
-- horizon, from one snapshot. Dynamic SQL, so each call is planned with its own horizon: a generic
-- plan would guess a third of the table and scan it all.
CREATE OR REPLACE FUNCTION erp_changed_pairs(p_projection text, p_types text[], p_since bigint)
RETURNS TABLE (horizon bigint, account_ids uuid[], stream_types text[])
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE
        'SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint,
                coalesce(array_agg(s.account_id), ''{}''), coalesce(array_agg(s.stream_type), ''{}'')
         FROM stream_sequences s
         LEFT JOIN projection_checkpoints c
           ON c.projection = $1 AND c.account_id = s.account_id AND c.stream_type = s.stream_type
         WHERE s.changed >= $3::text::xid8 AND s.stream_type = ANY($2) AND s.last_sequence > coalesce(c.position, 0)'
        USING p_projection, p_types, p_since;
END $$;
