-- Home rankings computed at request time, shared by every worker and replica. A known user whose
-- history changed since training is ranked by the request (sources, features, LightGBM: a few
-- ms of a worker's CPU); the ranking is a function of the history and the model version, so the
-- worker that computed it stores it here, under the user's history stamp of the read it ranked,
-- and any worker's next request for the same history reads it instead of computing it again
-- (with two workers a third of the computations were the other worker's repeats).
-- UNLOGGED: a cache of what can always be computed again; a crash empties it. No foreign key
-- to the users' registry: its check would lock the registry row that every new event updates.
CREATE UNLOGGED TABLE computed_home_rankings (
    user_id       text PRIMARY KEY,
    model_version text NOT NULL,
    history_stamp bigint NOT NULL,
    oldest_event  timestamptz,  -- the ranking holds while no event it ranked left the window
    ranking       bytea NOT NULL  -- ~6 KB of JSON (services/home_rankings.shared_ranking)
) WITH (toast_tuple_target = 8160);
-- A ranking is stored in its row as it is, without compression (ids and scores compress
-- ~2x for a CPU cost on every write and read) unless the row would not fit on a page.
ALTER TABLE computed_home_rankings ALTER COLUMN ranking SET STORAGE MAIN;

-- The reads of recent_users_events (0012), now also answered by a stored ranking: when a read
-- asks for a model version's rankings (`p_versions`, NULL: none) and one is stored for the
-- user's current stamp with every ranked event still in the window, one row with the ranking
-- and no event (the user's table is not read: its dynamic statement is most of a read's cost).
-- Each event row carries the user's current stamp, under which a ranking computed from the
-- events is stored.
-- Rows: the stamp held: (n, NULLs); a stored ranking: (n, NULLs, stamp, ranking); events:
-- (n, event, stamp, NULL) per event.
CREATE FUNCTION recent_users_events_or_rankings(
    p_users text[], p_sinces timestamptz[], p_limit integer, p_unless_stamps bigint[],
    p_versions text[]
)
RETURNS TABLE (
    request integer, event_type text, product_id text, query text, "timestamp" timestamptz,
    history_stamp bigint, ranking bytea
)
LANGUAGE plpgsql STABLE AS $$
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
        IF r.version IS NOT NULL THEN  -- looked up only here: most reads end above
            SELECT c.ranking INTO stored FROM computed_home_rankings c
            WHERE c.user_id = r.usr AND c.model_version = r.version
                AND c.history_stamp = r.current AND c.oldest_event >= r.since;
        END IF;
        IF stored IS NOT NULL THEN
            RETURN QUERY SELECT r.n, NULL::text, NULL::text, NULL::text, NULL::timestamptz,
                r.current, stored;
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

-- Rankings computed by a group of requests, one statement. A ranking of an older stamp never
-- replaces one of a newer stamp of the same version (two workers racing over a new click).
CREATE FUNCTION store_home_rankings(
    p_users text[], p_versions text[], p_stamps bigint[], p_oldest timestamptz[], p_rankings bytea[]
) RETURNS void LANGUAGE sql AS $$
    INSERT INTO computed_home_rankings AS c
        (user_id, model_version, history_stamp, oldest_event, ranking)
    SELECT DISTINCT ON (usr) usr, version, stamp, oldest, ranking
    FROM unnest(p_users, p_versions, p_stamps, p_oldest, p_rankings)
        AS t(usr, version, stamp, oldest, ranking)
    WHERE EXISTS (SELECT 1 FROM user_interaction_tables u WHERE u.user_id = t.usr)
    ORDER BY usr, stamp DESC
    ON CONFLICT (user_id) DO UPDATE SET
        model_version = excluded.model_version,
        history_stamp = excluded.history_stamp,
        oldest_event = excluded.oldest_event,
        ranking = excluded.ranking
    WHERE c.model_version <> excluded.model_version OR c.history_stamp <= excluded.history_stamp
$$;
