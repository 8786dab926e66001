-- One row per finished `maintain` run (not dry runs): what the "no successful run in 35 days"
-- alarm is computed from (the daily status heartbeat publishes DaysSinceLastSuccess). Idempotent.

CREATE TABLE IF NOT EXISTS partition_archiver.run_log (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id      text        NOT NULL,
  action      text        NOT NULL,
  ok          boolean     NOT NULL,
  started_at  timestamptz NOT NULL,
  finished_at timestamptz NOT NULL DEFAULT now(),
  summary     jsonb       NOT NULL
);

CREATE INDEX IF NOT EXISTS run_log_success_idx ON partition_archiver.run_log (finished_at) WHERE ok;
