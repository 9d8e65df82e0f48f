-- The append: one statement appends for many accounts, each append atomic on its own.
--
-- Called by commands.store.event_store (`APPEND_BATCH`, built from `AppendBatchArguments`,
-- whose fields name these parameters), for a group-commit batch and for a single append inside
-- a caller's transaction alike. Applied on every upgrade by the migrations' repeatable step
-- (erp/migrations/repeatable.py) with CREATE OR REPLACE, so the function is written here only.
-- CREATE OR REPLACE cannot change the argument list (a new list makes an overload): a change
-- of arguments needs a versioned migration that drops the old signature (as 0008 did).
--
-- It takes appends for distinct accounts, in ascending account order, each scoped to its
-- account, and answers per append: its positions, a conflict (a stale expected revision), a
-- duplicate (its command id is already logged) or fenced (a move holds the account's writes). A refused append writes nothing and leaves the
-- others in place; everything not refused commits together, in one transaction and one WAL
-- flush.
--
-- An append whose refusal can only be its first write (one stream, no command log: nearly
-- every command) runs straight; any other runs in a subtransaction that undoes it if refused.
-- A subtransaction costs about a third of an append.
--
-- Lock order stays global: accounts ascending (each account's write lock first); within an
-- account, streams by id, then sequence counters by stream type. Every append takes its locks in that order, so batches and single
-- appends never deadlock one another.
--
-- At most 60 appends per call: more subtransactions than a backend caches (64) would slow
-- every snapshot on the server.
--
-- Each counter row it advances records the appending transaction (`changed`, its xid), so a
-- projector finds the (account, stream type) pairs with new events from an index, without
-- looking at idle accounts (queries/projector/checkpoints.py).
--
-- Each event is stored at its schema version (p_versions: the version its name is at today,
-- `Upcasters.version`), so upcasters know which steps an event still needs when it is read.
--
-- A new stream whose events carry personal data comes with its data subject's key (p_stream_keys,
-- NULL elsewhere; commands/store/sealing.py), stored with its events, so the key is there exactly
-- when they are.

-- Per append i: p_stream_ends[i] and p_event_ends[i] say where its streams and events end
-- in the flat stream and event arrays (streams sorted by id, events in stream order); the
-- event arrays (p_event_*, p_names, p_payloads, p_versions) run in step.
CREATE OR REPLACE FUNCTION erp_append_batch(
    p_accounts uuid[], p_command_ids uuid[], p_correlation_ids uuid[], p_causation_ids uuid[],
    p_trace_contexts jsonb[], p_command_names text[], p_request_hashes bytea[], p_results jsonb[],
    p_stream_ends integer[], p_stream_ids text[], p_stream_types text[], p_expected integer[],
    p_counts integer[],
    p_event_ends integer[], p_event_stream_ids text[], p_event_revisions integer[],
    p_event_types text[], p_names text[], p_payloads jsonb[], p_versions smallint[],
    p_stream_keys bytea[] DEFAULT NULL
) RETURNS TABLE (stream_types text[], last_sequences bigint[], refusal text, detail text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_scope text := coalesce(current_setting('erp.account_id', true), '');
    v_appends integer := coalesce(array_length(p_accounts, 1), 0);
    i integer;
    j integer;
    s0 integer := 0;
    e0 integer := 0;
    v_actual integer;
    v_type text;
    v_count integer;
    v_last bigint;
    v_firsts bigint[];
    v_fence text;
BEGIN
    IF v_appends > 60 THEN
        RAISE EXCEPTION 'at most 60 appends per batch, got %', v_appends
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    FOR i IN 2 .. v_appends LOOP
        IF p_accounts[i] <= p_accounts[i - 1] THEN
            RAISE EXCEPTION 'a batch holds distinct accounts in ascending order'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    -- A transaction already scoped to an account may append for that account only:
    -- a store call must never widen what the rest of the transaction can see.
    IF v_scope <> '' AND EXISTS (SELECT FROM unnest(p_accounts) a WHERE a::text <> v_scope) THEN
        RAISE EXCEPTION 'this transaction belongs to account %', v_scope
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SET LOCAL ROLE erp_tenant;

    FOR i IN 1 .. v_appends LOOP
        stream_types := '{}';
        last_sequences := '{}';
        v_firsts := '{}';
        refusal := NULL;
        detail := NULL;
        PERFORM set_config('erp.account_id', p_accounts[i]::text, true);
        -- The account's write lock, held to commit; a move that fenced the account here refuses it
        -- (tenancy/fences.sql) before anything is written.
        v_fence := erp_write_lock(p_accounts[i]);
        IF v_fence IS NOT NULL THEN
            refusal := 'fenced';
            detail := v_fence;
        ELSIF p_stream_ends[i] = s0 + 1 AND p_command_names[i] IS NULL THEN
            -- One stream and no command log: the stream check is the append's first write,
            -- so a refusal has written nothing and needs no subtransaction to undo it.
            j := s0 + 1;
            IF p_expected[j] = 0 THEN
                INSERT INTO streams (account_id, stream_id, stream_type, revision)
                VALUES (p_accounts[i], p_stream_ids[j], p_stream_types[j], p_counts[j])
                ON CONFLICT (account_id, stream_id) DO NOTHING;
            ELSE
                UPDATE streams s SET revision = s.revision + p_counts[j]
                WHERE s.account_id = p_accounts[i] AND s.stream_id = p_stream_ids[j]
                  AND s.revision = p_expected[j];
            END IF;
            IF NOT FOUND THEN
                SELECT s.revision INTO v_actual FROM streams s
                WHERE s.account_id = p_accounts[i] AND s.stream_id = p_stream_ids[j];
                refusal := 'conflict';
                detail := json_build_object('StreamId', p_stream_ids[j], 'Expected', p_expected[j],
                                            'Actual', coalesce(v_actual, 0))::text;
            ELSE
                IF p_stream_keys[j] IS NOT NULL THEN
                    PERFORM erp_store_subject_key(p_accounts[i], p_stream_ids[j], p_stream_keys[j]);
                END IF;
                INSERT INTO stream_sequences AS s (account_id, stream_type, last_sequence, changed)
                VALUES (p_accounts[i], p_stream_types[j], p_counts[j], pg_current_xact_id())
                ON CONFLICT (account_id, stream_type)
                DO UPDATE SET last_sequence = s.last_sequence + EXCLUDED.last_sequence,
                              changed = EXCLUDED.changed
                RETURNING s.last_sequence INTO v_last;
                stream_types := ARRAY[p_stream_types[j]];
                last_sequences := ARRAY[v_last];
                INSERT INTO events (account_id, stream_id, stream_revision, payload_item_name, payload,
                                    stream_type, sequence_number, command_id, correlation_id, causation_id,
                                    trace_context, schema_version)
                SELECT p_accounts[i], p_stream_ids[j], e.revision, e.name, e.payload, p_stream_types[j],
                       v_last - p_counts[j] + e.ord, p_command_ids[i], p_correlation_ids[i],
                       p_causation_ids[i], p_trace_contexts[i], e.version
                FROM unnest(p_event_revisions[e0 + 1 : p_event_ends[i]], p_names[e0 + 1 : p_event_ends[i]],
                            p_payloads[e0 + 1 : p_event_ends[i]], p_versions[e0 + 1 : p_event_ends[i]])
                     WITH ORDINALITY AS e(revision, name, payload, version, ord);
            END IF;
        ELSE
            -- Several streams or a command log: a refusal may come after writes, which the
            -- subtransaction undoes without touching the other appends.
            BEGIN
                FOR j IN s0 + 1 .. p_stream_ends[i] LOOP
                    IF p_expected[j] = 0 THEN
                        INSERT INTO streams (account_id, stream_id, stream_type, revision)
                        VALUES (p_accounts[i], p_stream_ids[j], p_stream_types[j], p_counts[j])
                        ON CONFLICT (account_id, stream_id) DO NOTHING;
                    ELSE
                        UPDATE streams s SET revision = s.revision + p_counts[j]
                        WHERE s.account_id = p_accounts[i] AND s.stream_id = p_stream_ids[j]
                          AND s.revision = p_expected[j];
                    END IF;
                    IF NOT FOUND THEN
                        SELECT s.revision INTO v_actual FROM streams s
                        WHERE s.account_id = p_accounts[i] AND s.stream_id = p_stream_ids[j];
                        RAISE EXCEPTION 'stream % was expected at revision % but is at revision %',
                                p_stream_ids[j], p_expected[j], coalesce(v_actual, 0)
                            USING ERRCODE = 'ER409',
                                  DETAIL = json_build_object('StreamId', p_stream_ids[j],
                                                             'Expected', p_expected[j],
                                                             'Actual', coalesce(v_actual, 0))::text;
                    END IF;
                    IF p_stream_keys[j] IS NOT NULL THEN
                        PERFORM erp_store_subject_key(p_accounts[i], p_stream_ids[j], p_stream_keys[j]);
                    END IF;
                END LOOP;

                FOR v_type, v_count IN
                    SELECT x.t, sum(x.c)::integer
                    FROM unnest(p_stream_types[s0 + 1 : p_stream_ends[i]],
                                p_counts[s0 + 1 : p_stream_ends[i]]) AS x(t, c)
                    GROUP BY x.t ORDER BY x.t
                LOOP
                    INSERT INTO stream_sequences AS s (account_id, stream_type, last_sequence, changed)
                    VALUES (p_accounts[i], v_type, v_count, pg_current_xact_id())
                    ON CONFLICT (account_id, stream_type)
                    DO UPDATE SET last_sequence = s.last_sequence + EXCLUDED.last_sequence,
                                  changed = EXCLUDED.changed
                    RETURNING s.last_sequence INTO v_last;
                    stream_types := stream_types || v_type;
                    last_sequences := last_sequences || v_last;
                    v_firsts := v_firsts || (v_last - v_count + 1);
                END LOOP;

                INSERT INTO events (account_id, stream_id, stream_revision, payload_item_name, payload,
                                    stream_type, sequence_number, command_id, correlation_id, causation_id,
                                    trace_context, schema_version)
                SELECT p_accounts[i], e.stream_id, e.revision, e.name, e.payload, e.stream_type,
                       f.first_sequence + row_number() OVER (PARTITION BY e.stream_type ORDER BY e.ord) - 1,
                       p_command_ids[i], p_correlation_ids[i], p_causation_ids[i], p_trace_contexts[i],
                       e.version
                FROM unnest(p_event_stream_ids[e0 + 1 : p_event_ends[i]],
                            p_event_revisions[e0 + 1 : p_event_ends[i]],
                            p_event_types[e0 + 1 : p_event_ends[i]],
                            p_names[e0 + 1 : p_event_ends[i]],
                            p_payloads[e0 + 1 : p_event_ends[i]],
                            p_versions[e0 + 1 : p_event_ends[i]])
                     WITH ORDINALITY AS e(stream_id, revision, stream_type, name, payload, version, ord)
                JOIN unnest(stream_types, v_firsts) AS f(stream_type, first_sequence) USING (stream_type);

                IF p_command_names[i] IS NOT NULL THEN
                    INSERT INTO command_log (account_id, command_id, command_name, request_hash, result)
                    SELECT p_accounts[i], p_command_ids[i], p_command_names[i], p_request_hashes[i],
                           p_results[i]
                           || jsonb_build_object('Positions', coalesce(jsonb_object_agg(t, l), '{}'))
                    FROM unnest(stream_types, last_sequences) AS x(t, l)
                    ON CONFLICT (account_id, command_id) DO NOTHING;
                    IF NOT FOUND THEN
                        -- Already logged (by a concurrent retry that committed first): undo this append.
                        RAISE EXCEPTION 'command % is already logged', p_command_ids[i]
                            USING ERRCODE = 'ER412';
                    END IF;
                END IF;
            EXCEPTION
                WHEN SQLSTATE 'ER409' THEN
                    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
                    refusal := 'conflict';
                    stream_types := '{}';
                    last_sequences := '{}';
                WHEN SQLSTATE 'ER412' THEN
                    refusal := 'duplicate';
                    stream_types := '{}';
                    last_sequences := '{}';
            END;
        END IF;
        RETURN NEXT;
        s0 := p_stream_ends[i];
        e0 := p_event_ends[i];
    END LOOP;
    -- Appends for several accounts leave the transaction scoped to none (fail closed).
    IF v_scope = '' AND v_appends > 1 THEN
        PERFORM set_config('erp.account_id', '', true);
    END IF;
END $$;
