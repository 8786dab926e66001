-- Parquet archives (issue 12): part_config.archive_format and the manifest's format may be
-- 'parquet'. A Parquet file compresses its pages itself, with zstd or not at all: 'gzip' is
-- refused with it.
-- Idempotent.
ALTER TABLE partition_archiver.part_config
  DROP CONSTRAINT IF EXISTS part_config_archive_format_check;
ALTER TABLE partition_archiver.part_config
  ADD CONSTRAINT part_config_archive_format_check
  CHECK (archive_format IS NULL OR archive_format IN ('csv', 'binary', 'parquet'));
ALTER TABLE partition_archiver.part_config
  DROP CONSTRAINT IF EXISTS part_config_parquet_compression_check;
ALTER TABLE partition_archiver.part_config
  ADD CONSTRAINT part_config_parquet_compression_check
  CHECK (archive_format IS DISTINCT FROM 'parquet' OR archive_compression IS DISTINCT FROM 'gzip');
-- The manifest records archives in the new format.
ALTER TABLE partition_archiver.archive_manifest
  DROP CONSTRAINT IF EXISTS archive_manifest_format_check;
ALTER TABLE partition_archiver.archive_manifest
  ADD CONSTRAINT archive_manifest_format_check
  CHECK (format IS NULL OR format IN ('csv', 'binary', 'parquet'));
