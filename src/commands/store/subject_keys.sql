-- The data subjects' keys (commands/store/sealing.py): made on first use, deleted by an erasure.
--
-- Applied on every upgrade by the migrations' repeatable step (erp/migrations/repeatable.py) with
-- CREATE OR REPLACE. Each runs scoped to its account (erp_enter_account, streams.sql; or the
-- append's own scope), under the table's row-level security.

-- A new stream's subject's key, stored by the append that creates the stream (append.sql). A key
-- already there for it is an orphan that no event uses (the stream had none) and is replaced; an
-- erased subject's stream is never new.
CREATE OR REPLACE FUNCTION erp_store_subject_key(p_account uuid, p_subject text, p_key bytea)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO subject_keys AS k (account_id, subject, key) VALUES (p_account, p_subject, p_key)
    ON CONFLICT (account_id, subject) DO UPDATE SET key = EXCLUDED.key, created_at = now()
    WHERE k.erased_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% was erased: its stream cannot be new', p_subject
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;

-- Each subject's key, inserting the caller's fresh one where the subject has none. The INSERT
-- waits for a concurrent one of the same subject and keeps it; the SELECT, a statement of its own,
-- then sees whichever won. An erased subject answers its NULL key.
--
-- p_alone: the call is its own transaction (not a caller's), whose commit then need not wait for
-- the WAL flush. A key is only ever used by events appended after it committed, and the flush of
-- their commit covers every WAL record before it, the key's included; a key lost in a crash before
-- that was used by no committed event.
CREATE OR REPLACE FUNCTION erp_subject_keys(p_account uuid, p_subjects text[], p_fresh bytea[],
                                            p_alone boolean)
RETURNS TABLE (subject text, key bytea) LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    IF p_alone THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    -- The account's write lock, as an append takes it: a move copies the keys after its fence, so a
    -- key is made before the fence (and copied) or refused by it (ER503, tenancy/fences.sql).
    PERFORM erp_write_unfenced(p_account);
    PERFORM erp_enter_account(p_account);
    INSERT INTO subject_keys (account_id, subject, key)
    SELECT p_account, s.subject, s.key FROM unnest(p_subjects, p_fresh) AS s(subject, key)
    ON CONFLICT (account_id, subject) DO NOTHING;
    RETURN QUERY
        SELECT k.subject, k.key FROM subject_keys k
        WHERE k.account_id = p_account AND k.subject = ANY (p_subjects);
END $$;

-- Erases a subject: its key goes, its row stays (key NULL) as the record of the erasure. Runs in
-- the transaction that appends the erasure event, so the two commit together.
CREATE OR REPLACE FUNCTION erp_erase_subject(p_account uuid, p_subject text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM erp_enter_account(p_account);
    INSERT INTO subject_keys AS k (account_id, subject, key, erased_at)
    VALUES (p_account, p_subject, NULL, now())
    ON CONFLICT (account_id, subject)
    DO UPDATE SET key = NULL, erased_at = coalesce(k.erased_at, EXCLUDED.erased_at);
END $$;

-- The keys of one account's subjects, to open its events (NULL: erased); reads only.
CREATE OR REPLACE FUNCTION erp_open_subject_keys(p_account uuid, p_subjects text[])
RETURNS TABLE (subject text, key bytea) LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    PERFORM erp_enter_account(p_account);
    RETURN QUERY
        SELECT k.subject, k.key FROM subject_keys k
        WHERE k.account_id = p_account AND k.subject = ANY (p_subjects);
END $$;
