-- The per-user tables get a schema of their own, so backup, vacuum and monitoring take or leave
-- them by one name. The functions that create, fill and read them look there first, then in
-- public (where tables made before this migration stay until moved).
CREATE SCHEMA IF NOT EXISTS user_events;

ALTER FUNCTION create_user_table(text, text, text) SET search_path = user_events, public;
ALTER FUNCTION recent_user_events(text, timestamptz, int, bigint)
    SET search_path = user_events, public;
ALTER FUNCTION recent_users_events(text[], timestamptz[], int, bigint[])
    SET search_path = user_events, public;
ALTER FUNCTION recent_users_events_or_rankings(text[], timestamptz[], int, bigint[], text[])
    SET search_path = user_events, public;
ALTER FUNCTION ingest_events(
    text[], text[], text[], int[], int[], text[], text[], text[], timestamptz[], text[], boolean[],
    text[], text[]
) SET search_path = user_events, public;

-- Tables still to move: moving thousands in this transaction would take a lock on each (out of
-- shared memory on default settings), so database/user_tables.py moves them in batches after
-- the migrations, each batch in its own transaction.
CREATE TABLE user_tables_to_move (table_name text PRIMARY KEY);
INSERT INTO user_tables_to_move SELECT table_name FROM user_interaction_tables;

-- A user's history straight from the log (USER_EVENTS_SOURCE=global_log, and rebuilding the
-- per-user tables after a restore).
CREATE INDEX interaction_events_user_time_idx ON interaction_events (user_id, "timestamp" DESC);

-- A user's table made again from the log (after a restore, which leaves the per-user tables
-- out, or for a shop switching back to them): the same columns and rows the log holds for the
-- user. The user's registry row is kept (its history stamp came with the restore) or made.
-- Returns the rows written, or -1 when the table exists (a rebuild resumed).
CREATE FUNCTION rebuild_user_table(p_user text, p_table text, p_index text)
RETURNS bigint LANGUAGE plpgsql SET search_path = user_events, public AS $$
DECLARE
    v_rows bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_user, 0));  -- as create_user_table
    IF to_regclass(format('user_events.%I', p_table)) IS NOT NULL THEN
        RETURN -1;
    END IF;
    EXECUTE format(
        'CREATE TABLE user_events.%I ('
        '    event_type  text        NOT NULL CHECK (event_type IN (''product_click'', ''search_query'')),'
        '    product_id  text,'
        '    query       text,'
        '    "timestamp" timestamptz NOT NULL DEFAULT now()'
        ')', p_table);
    EXECUTE format(
        'INSERT INTO user_events.%I (event_type, product_id, query, "timestamp")'
        ' SELECT event_type, product_id, query, "timestamp" FROM interaction_events'
        ' WHERE user_id = $1', p_table) USING p_user;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    EXECUTE format('CREATE INDEX %I ON user_events.%I ("timestamp" DESC)', p_index, p_table);
    INSERT INTO user_interaction_tables (user_id, table_name) VALUES (p_user, p_table)
    ON CONFLICT (user_id) DO NOTHING;
    RETURN v_rows;
END
$$;
