-- Fences: how a move holds an account's writes in one database (the table: migration 0013).
--
-- Called by the append (commands/store/append.sql), by defining a custom attribute
-- (commands/customisation.py) and by moves (tenancy/fences.py). Applied on every upgrade by the
-- migrations' repeatable step (erp/migrations/repeatable.py), first, since the append calls it.
--
-- Every write of an account holds the account's write lock (a transaction-scoped advisory lock,
-- shared) from before it looks for a fence until it commits; fencing takes the same lock
-- exclusively. So once a fence commits, every write that looked before it has ended, and every
-- later one sees it (each statement of these functions reads with a snapshot of its own).

CREATE OR REPLACE FUNCTION erp_account_lock_key(p_account uuid) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT hashtextextended(p_account::text, 1163022413)  -- a seed of our own: 'ERPM'
$$;

-- Takes the account's write lock (shared, until commit); the fence here if there is one, as JSON
-- {"State", "Database"}, else NULL.
CREATE OR REPLACE FUNCTION erp_write_lock(p_account uuid) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_fence text;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(erp_account_lock_key(p_account));
    SELECT json_build_object('State', f.state, 'Database', f.other)::text INTO v_fence
    FROM account_fences f WHERE f.account_id = p_account;
    RETURN v_fence;
END $$;

-- The same for a write that cannot answer per account: a fence raises SQLSTATE ER503.
CREATE OR REPLACE FUNCTION erp_write_unfenced(p_account uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_fence text := erp_write_lock(p_account);
BEGIN
    IF v_fence IS NOT NULL THEN
        RAISE EXCEPTION 'account % is being moved to another database', p_account
            USING ERRCODE = 'ER503', DETAIL = v_fence;
    END IF;
END $$;

-- Fences the account here, once every write that did not see the fence has ended.
CREATE OR REPLACE FUNCTION erp_fence_account(p_account uuid, p_state text, p_other text, p_move uuid)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(erp_account_lock_key(p_account));
    INSERT INTO account_fences (account_id, state, other, move_id)
    VALUES (p_account, p_state, p_other, p_move)
    ON CONFLICT (account_id)
    DO UPDATE SET state = EXCLUDED.state, other = EXCLUDED.other, move_id = EXCLUDED.move_id, since = now();
END $$;
