-- Scoping, loading a stream and finding a logged command: one round trip each.
--
-- Called by commands.store.feed (erp_load_stream) and commands.service (erp_find_command);
-- every other store function starts with erp_enter_account. Applied on every upgrade by the
-- migrations' repeatable step (erp/migrations/repeatable.py), so each function is written here
-- only. CREATE OR REPLACE cannot change a function's arguments or result: such a change needs
-- a versioned migration that drops the old signature first.

-- Scopes the transaction to one account. A transaction already scoped to another
-- account is refused: a store call must never widen what the rest of it can see.
CREATE OR REPLACE FUNCTION erp_enter_account(p_account uuid) RETURNS void LANGUAGE plpgsql AS $$
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

CREATE OR REPLACE FUNCTION erp_load_stream(p_account uuid, p_stream_id text, p_after integer)
RETURNS SETOF events LANGUAGE plpgsql AS $$
BEGIN
    PERFORM erp_enter_account(p_account);
    RETURN QUERY
        SELECT * FROM events
        WHERE account_id = p_account AND stream_id = p_stream_id AND stream_revision > p_after
        ORDER BY stream_revision;
END $$;

CREATE OR REPLACE FUNCTION erp_find_command(p_account uuid, p_command_id uuid)
RETURNS SETOF command_log LANGUAGE plpgsql AS $$
BEGIN
    PERFORM erp_enter_account(p_account);
    RETURN QUERY SELECT * FROM command_log WHERE account_id = p_account AND command_id = p_command_id;
END $$;
