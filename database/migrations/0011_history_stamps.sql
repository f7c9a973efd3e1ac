-- A stamp per user that changes with every write to the user's table, kept in the registry row
-- that a history read looks up anyway. Training reads the stamps in the same snapshot as the
-- log, so a home request for a user whose stamp is still the one training saw knows, without
-- reading the user's table, that the history is the one training prepared a ranking for. The
-- read of a per-user table is a dynamic statement, parsed and planned on every request: ~0.5 ms
-- of PostgreSQL's CPU, the largest cost of a known user's home.
ALTER TABLE user_interaction_tables ADD COLUMN history_stamp bigint NOT NULL DEFAULT 0;
-- Room on each page for the updated row: the update stays on its page (a HOT update, no index
-- entries), measured at a PostgreSQL CPU cost per single click within noise of 0010's.
ALTER TABLE user_interaction_tables SET (fillfactor = 70);

-- ingest_events (migration 0010), now bumping the stamp of each user it writes to, in the
-- same transaction as the rows. The registry row's update also tells whether the user has a
-- table (it replaces the to_regclass lookup). Rows are locked in the callers' user order
-- (sorted), so concurrent groups cannot deadlock on them.
CREATE OR REPLACE FUNCTION ingest_events(
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
    v_first       int;
    v_last        int;
BEGIN
    IF array_length(p_users, 1) = array_length(p_event_ids, 1) THEN
        v_event_users := p_users;
    ELSE
        SELECT array_agg(p_users[i] ORDER BY i) INTO v_event_users
        FROM generate_subscripts(p_starts, 1) AS i, generate_series(p_starts[i], p_ends[i]);
    END IF;
    IF true = ANY (p_claimed) THEN
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
    ELSE
        v_fresh := array_fill(true, ARRAY[coalesce(array_length(p_event_ids, 1), 0)]);
    END IF;

    INSERT INTO interaction_events
        (user_id, event_type, product_id, query, "timestamp", event_id, variant)
    SELECT usr, typ, product, q, ts, id, variant
    FROM unnest(v_event_users, p_types, p_products, p_queries, p_times, p_event_ids, p_variants,
                v_fresh) AS t(usr, typ, product, q, ts, id, variant, fresh)
    WHERE fresh;

    FOR i IN 1 .. coalesce(array_length(p_users, 1), 0) LOOP
        v_first := p_starts[i];
        v_last := p_ends[i];
        CONTINUE WHEN NOT (true = ANY (v_fresh[v_first:v_last]));
        UPDATE user_interaction_tables SET history_stamp = history_stamp + 1
        WHERE user_id = p_users[i];
        IF NOT FOUND THEN
            PERFORM create_user_table(p_users[i], p_tables[i], p_indexes[i]);
            UPDATE user_interaction_tables SET history_stamp = history_stamp + 1
            WHERE user_id = p_users[i];
        END IF;
        IF v_first = v_last THEN
            EXECUTE format(
                'INSERT INTO %I (event_type, product_id, query, "timestamp")'
                ' VALUES ($1, $2, $3, $4)',
                p_tables[i]
            ) USING p_types[v_first], p_products[v_first], p_queries[v_first], p_times[v_first];
        ELSE
            EXECUTE format(
                'INSERT INTO %I (event_type, product_id, query, "timestamp")'
                ' SELECT typ, product, q, ts'
                ' FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::boolean[])'
                '     AS t(typ, product, q, ts, fresh)'
                ' WHERE fresh',
                p_tables[i]
            ) USING p_types[v_first:v_last], p_products[v_first:v_last],
                    p_queries[v_first:v_last], p_times[v_first:v_last], v_fresh[v_first:v_last];
        END IF;
    END LOOP;
    RETURN QUERY SELECT id FROM unnest(p_event_ids, v_fresh) AS t(id, fresh) WHERE fresh;
END
$$;

-- recent_user_events (migration 0009), with the stamp training read: when the user's stamp is
-- still p_unless_stamp, one row of NULLs (never a stored event: event_type is NOT NULL) and the
-- table is not read. NULL (the default): always read, as before.
DROP FUNCTION recent_user_events(text, timestamptz, integer);
CREATE FUNCTION recent_user_events(
    p_user text, p_since timestamptz, p_limit integer, p_unless_stamp bigint DEFAULT NULL
)
RETURNS TABLE (event_type text, product_id text, query text, "timestamp" timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    user_table text;
    user_stamp bigint;
BEGIN
    SELECT r.table_name, r.history_stamp INTO user_table, user_stamp
    FROM user_interaction_tables r WHERE r.user_id = p_user;
    IF user_table IS NULL THEN
        RETURN;
    END IF;
    IF user_stamp = p_unless_stamp THEN
        RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::timestamptz;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT event_type, product_id, query, "timestamp" FROM %I'
        ' WHERE "timestamp" >= $1 ORDER BY "timestamp" DESC LIMIT $2', user_table)
    USING p_since, p_limit;
END
$$;
