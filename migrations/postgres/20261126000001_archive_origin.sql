-- Write-once archives (issue 10): who wrote an archive, and which upload attempt.
--   system_identifier: pg_control_system().system_identifier of the database that detached the
--     partition, shown by restore and verify (a clone restored from a snapshot shares it).
--   upload_token: a random token written into the object's metadata at upload and kept here, so
--     a run that finds an object at its key knows whether it is its own earlier upload (completed
--     by a run killed before it could record `uploaded`) or somebody else's archive.
-- Idempotent.
ALTER TABLE partition_archiver.archive_manifest
  ADD COLUMN IF NOT EXISTS system_identifier text,
  ADD COLUMN IF NOT EXISTS upload_token text;
