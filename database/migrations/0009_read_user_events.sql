-- A user's recent events through one statement whose text is the same for every user, so each
-- connection prepares it once. With the table name in the SQL, every home request prepared a
-- new statement (two round trips instead of one) and churned the client's statement cache.
-- No table registered for the user: no rows.
CREATE FUNCTION recent_user_events(p_user text, p_since timestamptz, p_limit integer)
RETURNS TABLE (event_type text, product_id text, query text, "timestamp" timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    user_table text;
BEGIN
    SELECT r.table_name INTO user_table FROM user_interaction_tables r WHERE r.user_id = p_user;
    IF user_table IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT event_type, product_id, query, "timestamp" FROM %I'
        ' WHERE "timestamp" >= $1 ORDER BY "timestamp" DESC LIMIT $2', user_table)
    USING p_since, p_limit;
END
$$;
