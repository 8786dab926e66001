-- Integer epoch keys and UUIDv7 keys (issue 20): part_config.epoch says how a key that is not a
-- date or timestamp holds time. 'seconds', 'milliseconds' or 'microseconds' since 1970-01-01 UTC
-- for a bigint or integer column; 'uuidv7' for a uuid column of UUIDv7 values (the first 48 bits
-- are the creation time in milliseconds). NULL for timestamptz, timestamp and date keys.
-- Bounds are the period's instants in that unit; a UUIDv7 bound is the smallest UUID of the
-- period's first millisecond (src/plan/period.rs, bound_literal). The binary maintains these
-- tables; the SQL function create_partitions (for pg_cron) keeps to timestamp and date keys.
-- Idempotent.
ALTER TABLE partition_archiver.part_config ADD COLUMN IF NOT EXISTS epoch text;
ALTER TABLE partition_archiver.part_config
  DROP CONSTRAINT IF EXISTS part_config_epoch_check;
ALTER TABLE partition_archiver.part_config
  ADD CONSTRAINT part_config_epoch_check
  CHECK (epoch IS NULL OR epoch IN ('seconds', 'milliseconds', 'microseconds', 'uuidv7'));
-- The manifest records archives of such keys (src/plan/period.rs, KeyType).
ALTER TABLE partition_archiver.archive_manifest
  DROP CONSTRAINT IF EXISTS archive_manifest_key_type_check;
ALTER TABLE partition_archiver.archive_manifest
  ADD CONSTRAINT archive_manifest_key_type_check
  CHECK (key_type IN ('timestamptz', 'timestamp', 'date', 'epoch_seconds', 'epoch_milliseconds',
                      'epoch_microseconds', 'uuidv7'));
