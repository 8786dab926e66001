-- Freezing a detached partition before it is archived, and the last check before it is dropped.
--
-- The archiver installs a statement-level trigger calling refuse_writes() on the detached table
-- (CREATE OR REPLACE TRIGGER partition_archiver_frozen ... BEFORE INSERT OR UPDATE OR DELETE OR
-- TRUNCATE) in a committed transaction before its COPY starts. CREATE TRIGGER waits for writers
-- already in the table, and every later write by name fails, so the COPY, the row count and the
-- table that is finally dropped hold the same rows. Two kinds of write still pass, on purpose:
--   - writes made by another trigger (pg_trigger_depth() > 1): foreign-key actions such as
--     ON DELETE CASCADE or SET NULL, which a detached table keeps from its parent, must not make
--     the application's deletes fail; they only remove or blank rows that the archive still has;
--   - writes while the table is a partition again (an operator re-attached it): it is then an
--     ordinary partition, and require_archive_state() refuses to drop an attached table.
-- A partition moved to the historical schema stays frozen (it mirrors its archive). To unfreeze a
-- table whose archive was abandoned: DROP TRIGGER partition_archiver_frozen ON schema.table;
--
-- require_row_count() runs in the DROP transaction, after the table is locked ACCESS EXCLUSIVE:
-- the table may not hold more rows than its verified archive, and if the freeze trigger is gone or
-- disabled it must hold exactly as many; otherwise nothing is dropped. (Fewer rows under an intact
-- trigger are rows that foreign-key cascades removed: the archive has them all.)
-- Idempotent.

CREATE OR REPLACE FUNCTION partition_archiver.refuse_writes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF pg_trigger_depth() > 1 OR (SELECT c.relispartition FROM pg_class c WHERE c.oid = TG_RELID) THEN
    RETURN NULL;
  END IF;
  RAISE EXCEPTION 'table %.% was detached for archiving by partition-archiver: writes are refused',
                  TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = 'object_not_in_prerequisite_state',
          HINT = 'Restore the partition from its archive to change it, or DROP TRIGGER partition_archiver_frozen on the table if its archive was abandoned.';
END $$;

CREATE OR REPLACE FUNCTION partition_archiver.require_row_count(p_table regclass, p_expected bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_rows   bigint;
  v_frozen boolean;
BEGIN
  EXECUTE format('SELECT count(*) FROM %s', p_table) INTO v_rows;
  SELECT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = p_table AND t.tgname = 'partition_archiver_frozen'
                   AND t.tgenabled IN ('O', 'A'))
    INTO v_frozen;
  IF p_expected IS NULL OR v_rows > p_expected OR (NOT v_frozen AND v_rows <> p_expected) THEN
    RAISE EXCEPTION 'table % holds % rows but its verified archive holds % (freeze trigger %): not dropped',
                    p_table, v_rows, p_expected, CASE WHEN v_frozen THEN 'in place' ELSE 'missing or disabled' END
      USING ERRCODE = 'data_exception';
  END IF;
END $$;
