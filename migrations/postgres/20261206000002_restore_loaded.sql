-- Restores in units: which objects of an archive a restore has loaded into its staging table. A row
-- is written in the transaction that loads and verifies its object (SHA-256 and row counts), so it
-- exists exactly when that object's rows do. A restore that stopped (its time budget, a Lambda's
-- deadline, a transient failure) is resumed by the next restore of the partition from the objects
-- without a row; the final step checks the rows here against the manifest (no scan of the table),
-- renames the staging table and deletes them, in one transaction. Keyed by the restore id written
-- into the staging table's comment when it is created, so a staging table created again (or an oid
-- reused) never inherits another's rows. Idempotent.

CREATE TABLE IF NOT EXISTS partition_archiver.restore_loaded (
  restore_id text        NOT NULL,
  object_no  integer     NOT NULL,
  sha256     text        NOT NULL,
  row_count  bigint      NOT NULL,
  loaded_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (restore_id, object_no)
);

COMMENT ON TABLE partition_archiver.restore_loaded IS
  'Objects loaded into a restore''s staging table (object_no: the chunk number, 1 for a one-object archive).';
