-- Read an account's customisations in one round trip, scoped like the other store functions.
--
-- Called by commands.customisation (the API re-reads each account's definitions every few
-- seconds; as an explicit transaction that was four round trips: BEGIN, scope, SELECT, COMMIT).
-- Applied on every upgrade by the migrations' repeatable step (erp/migrations/repeatable.py),
-- after commands/store/streams.sql, whose erp_enter_account it calls.

CREATE OR REPLACE FUNCTION erp_customisations(p_account uuid)
RETURNS SETOF customisations LANGUAGE plpgsql AS $$
BEGIN
    PERFORM erp_enter_account(p_account);
    RETURN QUERY SELECT * FROM customisations WHERE account_id = p_account;
END $$;
