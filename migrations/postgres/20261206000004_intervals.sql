-- Daily, weekly (ISO weeks, from Monday) and quarterly tables besides monthly and yearly (issue 20).
-- Names, steps and bounds: partition_archiver.partition_name and period_step in
-- 20250528000000_partition_archiver_schema.sql, and src/plan/period.rs (the same rules).
-- A table may change interval: existing partitions keep their bounds and names, and the new
-- interval applies from the first instant they do not cover.
-- Idempotent.
ALTER TABLE partition_archiver.part_config
  DROP CONSTRAINT IF EXISTS part_config_partition_interval_check;
ALTER TABLE partition_archiver.part_config
  ADD CONSTRAINT part_config_partition_interval_check
  CHECK (partition_interval IN ('day', 'week', 'month', 'quarter', 'year'));
