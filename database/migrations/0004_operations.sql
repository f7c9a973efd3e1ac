-- Scheduled and manual job runs (trending, retrain, retention): what ran, when, how it ended.
CREATE TABLE job_runs (
    id          bigserial   PRIMARY KEY,
    job         text        NOT NULL,
    trigger     text        NOT NULL,  -- schedule | admin | cli
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome     text        NOT NULL DEFAULT 'running'
                CHECK (outcome IN ('running', 'succeeded', 'failed', 'interrupted')),
    detail      text,
    worker      text        NOT NULL
);
CREATE INDEX job_runs_job_started_idx ON job_runs (job, started_at DESC);

-- Each serving worker's heartbeat: which model version it serves (shown by /admin/status).
CREATE TABLE worker_heartbeats (
    worker        text        PRIMARY KEY,
    model_version text,
    started_at    timestamptz NOT NULL,
    seen_at       timestamptz NOT NULL
);

-- Hourly activity rollup, refreshed by the hourly job; trimmed by retention.
CREATE TABLE activity_hourly (
    bucket     timestamptz NOT NULL,
    event_type text        NOT NULL,
    events     bigint      NOT NULL,
    users      bigint      NOT NULL,
    products   bigint      NOT NULL,
    PRIMARY KEY (bucket, event_type)
);

-- With TimescaleDB: a hypertable with a retention policy (the database drops old chunks itself).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('activity_hourly', 'bucket', chunk_time_interval => interval '7 days');
        PERFORM add_retention_policy('activity_hourly', interval '400 days');
    END IF;
END
$$;
