-- ingest_events (migration 0008) with less work per event, the same rows and results. Measured
-- with pgbench on one connection (synchronous_commit off, so CPU only): a group of 8 single
-- clicks of 8 users 2.2 -> 1.3 ms.
-- * A user with one event in the group (every single-click request) gets a plain
--   INSERT ... VALUES: the dynamic statement is parsed and planned per user, and planning
--   `SELECT ... FROM unnest(5 arrays) WHERE fresh` cost about twice as much as the insert itself.
-- * No claim on ingested_event_ids when no event carries a client id, and no per-event user
--   array to build when each user has one event.
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
        IF to_regclass(format('%I', p_tables[i])) IS NULL THEN
            PERFORM create_user_table(p_users[i], p_tables[i], p_indexes[i]);
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
