-- USER_EVENTS_SOURCE=global_log: the log alone holds a user's events. Ingestion keeps each
-- user's registry row (its history stamp; the table name a rebuild would use) but makes and
-- fills no per-user table; history reads come from the log through its (user_id, timestamp)
-- index (migration 0015), a statement planned once per connection instead of a dynamic one
-- per table. Each of the two functions takes the source as its last argument, so one body
-- serves both.

-- ingest_events (migration 0014) with p_user_tables: false stores no per-user table.
DROP FUNCTION ingest_events(
    text[], text[], text[], int[], int[], text[], text[], text[], timestamptz[], text[], boolean[],
    text[], text[]
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
    p_digests   text[],
    p_user_tables boolean
) RETURNS SETOF text LANGUAGE plpgsql SET search_path = user_events, public AS $$
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

    IF NOT p_user_tables THEN
        -- Each user with a stored event: registered, or its stamp changed (in the callers'
        -- user order, as the loop below locks the rows).
        INSERT INTO user_interaction_tables AS u (user_id, table_name, history_stamp)
        SELECT p_users[i], p_tables[i], 1
        FROM generate_subscripts(p_users, 1) AS i
        WHERE true = ANY (v_fresh[p_starts[i]:p_ends[i]])
        ORDER BY i
        ON CONFLICT (user_id) DO UPDATE SET history_stamp = u.history_stamp + 1;
        RETURN QUERY SELECT id FROM unnest(p_event_ids, v_fresh) AS t(id, fresh) WHERE fresh;
        RETURN;
    END IF;

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

-- recent_users_events_or_rankings (migration 0013) with p_from_log: the events read from the
-- log instead of the users' tables.
DROP FUNCTION recent_users_events_or_rankings(text[], timestamptz[], int, bigint[], text[]);
CREATE FUNCTION recent_users_events_or_rankings(
    p_users text[], p_sinces timestamptz[], p_limit integer, p_unless_stamps bigint[],
    p_versions text[], p_from_log boolean
)
RETURNS TABLE (
    request integer, event_type text, product_id text, query text, "timestamp" timestamptz,
    history_stamp bigint, ranking bytea
)
LANGUAGE plpgsql STABLE SET search_path = user_events, public AS $$
DECLARE
    r record;
    stored bytea;
BEGIN
    FOR r IN
        SELECT t.n::integer AS n, t.usr, t.since, t.stamp, t.version, u.table_name,
               u.history_stamp AS current
        FROM unnest(p_users, p_sinces, p_unless_stamps, p_versions)
            WITH ORDINALITY AS t(usr, since, stamp, version, n)
        JOIN user_interaction_tables u ON u.user_id = t.usr
        ORDER BY t.n
    LOOP
        IF r.current = r.stamp THEN
            RETURN QUERY SELECT r.n, NULL::text, NULL::text, NULL::text, NULL::timestamptz,
                NULL::bigint, NULL::bytea;
            CONTINUE;
        END IF;
        stored := NULL;
        IF r.version IS NOT NULL THEN
            SELECT c.ranking INTO stored FROM computed_home_rankings c
            WHERE c.user_id = r.usr AND c.model_version = r.version
                AND c.history_stamp = r.current AND c.oldest_event >= r.since;
        END IF;
        IF stored IS NOT NULL THEN
            RETURN QUERY SELECT r.n, NULL::text, NULL::text, NULL::text, NULL::timestamptz,
                r.current, stored;
        ELSIF p_from_log THEN
            RETURN QUERY
                SELECT r.n, e.event_type, e.product_id, e.query, e."timestamp", r.current,
                       NULL::bytea
                FROM interaction_events e
                WHERE e.user_id = r.usr AND e."timestamp" >= r.since
                ORDER BY e."timestamp" DESC
                LIMIT p_limit;
        ELSE
            RETURN QUERY EXECUTE format(
                'SELECT $3, event_type, product_id, query, "timestamp", $4, NULL::bytea'
                ' FROM %I WHERE "timestamp" >= $1 ORDER BY "timestamp" DESC LIMIT $2',
                r.table_name)
            USING r.since, p_limit, r.n, r.current;
        END IF;
    END LOOP;
END
$$;
