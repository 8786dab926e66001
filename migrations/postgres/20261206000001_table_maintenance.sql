-- When each managed table was last maintained without failure (and not skipped because another
-- session held its lock). A run whose tables are all skipped still succeeds; the heartbeat
-- publishes the oldest of these dates as OldestTableMaintenanceDays, and the template alarms on it,
-- so a table skipped run after run (a lock that is never released) pages someone. Idempotent.

CREATE TABLE IF NOT EXISTS partition_archiver.table_maintenance (
  schema_name     text        NOT NULL,
  table_name      text        NOT NULL,
  last_success_at timestamptz NOT NULL,
  last_run_id     text        NOT NULL,
  PRIMARY KEY (schema_name, table_name)
);

COMMENT ON TABLE partition_archiver.table_maintenance IS
  'Last successful maintenance of each table (the source of the OldestTableMaintenanceDays metric).';
