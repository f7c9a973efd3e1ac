-- Global, append-only log of every event (the per-user tables hold the same events per user).
-- Batch jobs read only this log: a query across thousands of per-user tables would take one
-- lock per table and run out of shared memory.
CREATE TABLE interaction_events (
    user_id     text        NOT NULL,
    event_type  text        NOT NULL CHECK (event_type IN ('product_click', 'search_query')),
    product_id  text,
    query       text,
    "timestamp" timestamptz NOT NULL,
    event_id    text        NOT NULL
);
CREATE INDEX interaction_events_timestamp_idx ON interaction_events ("timestamp" DESC);

-- Client-supplied event ids already stored: a retried POST is stored once. Kept apart from the
-- log because a hypertable's unique keys must include its time column.
CREATE TABLE ingested_event_ids (
    event_id  text PRIMARY KEY,
    user_id   text        NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);

-- Which users have a per-user table (created on their first event).
CREATE TABLE user_interaction_tables (
    user_id    text PRIMARY KEY,
    table_name text        NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- TimescaleDB where the extension is installed (docker compose); plain PostgreSQL elsewhere.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        PERFORM create_hypertable('interaction_events', 'timestamp', migrate_data => true);
    END IF;
END
$$;
