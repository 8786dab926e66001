-- Freezing a detached partition before it is archived. The archiver installs a statement-level
-- trigger calling this function on the detached table (CREATE OR REPLACE TRIGGER
-- partition_archiver_frozen ... BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE) in a committed
-- transaction before its COPY starts. CREATE TRIGGER waits for writers already in the table, and
-- every later write fails, so the COPY, the row count and the table that is finally dropped all hold
-- the same rows: a row written into a detached partition by name can no longer slip in after the
-- archive was made and be dropped with the table. A partition moved to the historical schema stays
-- frozen (it is a copy of its archive); to unfreeze a table whose archive was abandoned:
--   DROP TRIGGER partition_archiver_frozen ON schema.table;
-- Idempotent.

CREATE OR REPLACE FUNCTION partition_archiver.refuse_writes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'table %.% was detached for archiving by partition-archiver: writes are refused',
                  TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = 'object_not_in_prerequisite_state',
          HINT = 'Restore the partition from its archive to change it, or DROP TRIGGER partition_archiver_frozen on the table if its archive was abandoned.';
END $$;
