-- When an event reached the server: the hourly trending update picks up events by arrival, so
-- events sent late with an old client timestamp are still counted.
ALTER TABLE interaction_events ADD COLUMN ingested_at timestamptz NOT NULL DEFAULT now();

-- Trending score per product, updated incrementally: score * rate^(hours since) + new events.
CREATE TABLE trending_scores (
    product_id text PRIMARY KEY,
    score      double precision NOT NULL
);

-- One row: when the scores were last brought up to date, and up to which arrival time.
CREATE TABLE trending_state (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    computed_at timestamptz NOT NULL,
    watermark   timestamptz NOT NULL
);
