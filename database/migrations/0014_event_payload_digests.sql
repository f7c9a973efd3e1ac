-- An event id names one event: a retry with a different payload under the same client event id is
-- a client's mistake (409), told apart from a retry by a digest of the payload kept with the id.
-- Ids stored before this migration have no digest: any retry of them is taken as a retry.
ALTER TABLE ingested_event_ids ADD COLUMN payload_digest text;

-- ingest_events (migration 0011), storing each claimed id's payload digest.
DROP FUNCTION ingest_events(
    text[], text[], text[], int[], int[], text[], text[], text[], timestamptz[], text[], boolean[],
    text[]
);
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
    p_variants  text[],
    p_digests   text[]
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
            INSERT INTO ingested_event_ids (event_id, user_id, payload_digest)
            SELECT id, usr, digest
            FROM unnest(p_event_ids, v_event_users, p_claimed, p_digests) AS t(id, usr, c, digest)
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
