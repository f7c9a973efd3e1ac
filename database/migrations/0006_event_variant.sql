-- The A/B ranking variant the user was assigned when the event arrived, so a shop can compare
-- variants on the events that follow their recommendations. Only the global log has it: the
-- per-user tables keep the spec's four columns.
ALTER TABLE interaction_events ADD COLUMN IF NOT EXISTS variant text;
