-- The history reads of several requests in one statement: each worker sends the reads of the
-- requests that arrived while its previous read was in flight together (services/history.py),
-- so a round trip, its statement and the client's work around it are paid once per group, not
-- once per request (most home requests read a history: new users' are empty, known users' are
-- often unchanged since training). Per read, the same answer as recent_user_events (0011):
-- no rows for a user without a table, one row of NULLs when the user's history stamp is still
-- the read's stamp, else the newest events since the read's time. `request` is the read's
-- place in the arrays (from 1). recent_user_events stays for the versions before this one.
CREATE FUNCTION recent_users_events(
    p_users text[], p_sinces timestamptz[], p_limit integer, p_unless_stamps bigint[]
)
RETURNS TABLE (
    request integer, event_type text, product_id text, query text, "timestamp" timestamptz
)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT t.n::integer AS n, t.since, t.stamp, u.table_name, u.history_stamp
        FROM unnest(p_users, p_sinces, p_unless_stamps) WITH ORDINALITY AS t(usr, since, stamp, n)
        JOIN user_interaction_tables u ON u.user_id = t.usr
        ORDER BY t.n
    LOOP
        IF r.history_stamp = r.stamp THEN
            RETURN QUERY SELECT r.n, NULL::text, NULL::text, NULL::text, NULL::timestamptz;
        ELSE
            RETURN QUERY EXECUTE format(
                'SELECT $3, event_type, product_id, query, "timestamp" FROM %I'
                ' WHERE "timestamp" >= $1 ORDER BY "timestamp" DESC LIMIT $2', r.table_name)
            USING r.since, p_limit, r.n;
        END IF;
    END LOOP;
END
$$;
