-- Storing events in one statement, so one round trip (and one commit) stores a whole group of
-- events: a batch request, or the single-event requests a worker's writer gathered meanwhile.
-- Table and index names are built and validated by database/identifiers.py and quoted here
-- with %I; values go as parameters (USING).

-- A user's table as the spec has it, created on the first event. Safe under concurrency: an
-- advisory lock per user serialises creators, and the registry row is written in the same
-- transaction as the table. True if created now.
CREATE FUNCTION create_user_table(p_user text, p_table text, p_index text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_user, 0));
    -- A new snapshot after the lock (volatile function, read committed): sees a concurrent
    -- creator's commit.
    IF EXISTS (SELECT 1 FROM user_interaction_tables WHERE user_id = p_user) THEN
        RETURN false;
    END IF;
    EXECUTE format(
        'CREATE TABLE %I ('
        '    event_type  text        NOT NULL CHECK (event_type IN (''product_click'', ''search_query'')),'
        '    product_id  text,'
        '    query       text,'
        '    "timestamp" timestamptz NOT NULL DEFAULT now()'
        ')', p_table);
    EXECUTE format('CREATE INDEX %I ON %I ("timestamp" DESC)', p_index, p_table);
    INSERT INTO user_interaction_tables (user_id, table_name) VALUES (p_user, p_table);
    RETURN true;
END
$$;

-- Events grouped by user: user i's events are p_starts[i]..p_ends[i] (1-based) of the per-event
-- arrays. Client event ids seen before (p_claimed marks the ones a client sent) are retries and
-- are skipped; the others go to the global log and to their user's table, created when missing.
-- Returns the ids of the events stored now. The caller sends each event id once per call.
CREATE FUNCTION ingest_events(
    p_users     text[],
    p_tables    text[],
    p_indexes   text[],
    p_starts    int[],
    p_ends      int[],
    p_types     text[],
    p_products  text[],
    p_queries   text[],
    p_times     timestamptz[],
    p_event_ids text[],
    p_claimed   boolean[],
    p_variants  text[]
) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    v_event_users text[];
    v_new_ids     text[];
    v_fresh       boolean[];
BEGIN
    SELECT array_agg(p_users[i] ORDER BY i) INTO v_event_users
    FROM generate_subscripts(p_starts, 1) AS i, generate_series(p_starts[i], p_ends[i]);
    WITH claimed AS (
        INSERT INTO ingested_event_ids (event_id, user_id)
        SELECT id, usr FROM unnest(p_event_ids, v_event_users, p_claimed) AS t(id, usr, c)
        WHERE c
        ORDER BY id  -- one order for every statement: concurrent claims cannot deadlock
        ON CONFLICT (event_id) DO NOTHING
        RETURNING event_id
    )
    SELECT coalesce(array_agg(event_id), '{}') INTO v_new_ids FROM claimed;
    SELECT array_agg(NOT c OR id = ANY (v_new_ids) ORDER BY n) INTO v_fresh
    FROM unnest(p_event_ids, p_claimed) WITH ORDINALITY AS t(id, c, n);

    INSERT INTO interaction_events
        (user_id, event_type, product_id, query, "timestamp", event_id, variant)
    SELECT usr, typ, product, q, ts, id, variant
    FROM unnest(v_event_users, p_types, p_products, p_queries, p_times, p_event_ids, p_variants,
                v_fresh) AS t(usr, typ, product, q, ts, id, variant, fresh)
    WHERE fresh;

    FOR i IN 1 .. coalesce(array_length(p_users, 1), 0) LOOP
        CONTINUE WHEN NOT (true = ANY (v_fresh[p_starts[i]:p_ends[i]]));
        IF to_regclass(format('%I', p_tables[i])) IS NULL THEN
            PERFORM create_user_table(p_users[i], p_tables[i], p_indexes[i]);
        END IF;
        EXECUTE format(
            'INSERT INTO %I (event_type, product_id, query, "timestamp")'
            ' SELECT typ, product, q, ts'
            ' FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::boolean[])'
            '     AS t(typ, product, q, ts, fresh)'
            ' WHERE fresh',
            p_tables[i]
        ) USING p_types[p_starts[i]:p_ends[i]], p_products[p_starts[i]:p_ends[i]],
                p_queries[p_starts[i]:p_ends[i]], p_times[p_starts[i]:p_ends[i]],
                v_fresh[p_starts[i]:p_ends[i]];
    END LOOP;
    RETURN QUERY SELECT id FROM unnest(p_event_ids, v_fresh) AS t(id, fresh) WHERE fresh;
END
$$;

DROP FUNCTION append_user_events(text[], int[], int[], text[], text[], text[], timestamptz[]);
