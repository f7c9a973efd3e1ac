-- Append a batch's events to their users' tables in one round trip. The rows come sorted by
-- table; p_starts/p_ends delimit each table's slice. Table names are built and validated by
-- database/identifiers.py and quoted here with %I; values go as parameters (USING).
-- A missing table raises undefined_table, which the caller handles (creates it, retries).
CREATE FUNCTION append_user_events(
    p_tables   text[],
    p_starts   int[],
    p_ends     int[],
    p_types    text[],
    p_products text[],
    p_queries  text[],
    p_times    timestamptz[]
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_tables, 1), 0) LOOP
        EXECUTE format(
            'INSERT INTO %I (event_type, product_id, query, "timestamp")'
            ' SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])',
            p_tables[i]
        ) USING p_types[p_starts[i]:p_ends[i]], p_products[p_starts[i]:p_ends[i]],
                p_queries[p_starts[i]:p_ends[i]], p_times[p_starts[i]:p_ends[i]];
    END LOOP;
END
$$;
