-- The freeze as proof, so a DROP needs no scan of the table (a 500 GB partition's count(*) fits no
-- Lambda invocation).
--
-- freeze() freezes a detached table with two triggers, both ENABLE ALWAYS (so they also fire in
-- session_replication_role = replica):
--   - partition_archiver_frozen, the statement trigger of 20250801000003 (refuse_writes()): every
--     write by name, COPY FROM and TRUNCATE included;
--   - partition_archiver_frozen_rows, a row trigger (refuse_row_writes()): rows no statement
--     trigger sees, such as a logical replication apply worker's (it fires only row triggers).
-- Both let through what refuse_writes() always let through: writes made by another trigger
-- (foreign-key actions) and writes while the table is a partition again.
--
-- It records, in the same transaction and before the first COPY of the archive, the table's freeze
-- mark (freeze_mark()): the xmin of every catalog row the freeze depends on, that is both triggers'
-- pg_trigger rows, both functions' pg_proc rows and the table's pg_class row. Dropping, disabling,
-- re-enabling or replacing a trigger, replacing a function, and attaching or detaching the table
-- (or any other ALTER of it) each write a new version of one of those rows; VACUUM and ANALYZE
-- update pg_class in place and do not. So while freeze_mark() equals archive_manifest.frozen_by,
-- nothing but foreign-key actions has written to the table since its rows were first copied, and
-- require_unchanged(), the last check before the DROP, reads only those catalog rows. When it
-- differs, or was never recorded (a table frozen by an earlier version; a freeze found changed
-- after the archive began, recorded as 'unproven'), it counts the table with require_row_count()
-- as before. A mark that differs for a harmless reason (a GRANT, an index) only costs that count.
-- Idempotent.

ALTER TABLE partition_archiver.archive_manifest ADD COLUMN IF NOT EXISTS frozen_by text;

COMMENT ON COLUMN partition_archiver.archive_manifest.frozen_by IS
  'The freeze mark (freeze_mark()) recorded before the first COPY of the archive, or ''unproven''.';

CREATE OR REPLACE FUNCTION partition_archiver.refuse_row_writes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF pg_trigger_depth() > 1 OR (SELECT c.relispartition FROM pg_class c WHERE c.oid = TG_RELID) THEN
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;
  RAISE EXCEPTION 'table %.% was detached for archiving by partition-archiver: writes are refused',
                  TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = 'object_not_in_prerequisite_state',
          HINT = 'Restore the partition from its archive to change it, or SELECT partition_archiver.unfreeze(''schema.table'') if its archive was abandoned.';
END $$;

-- Unfreezes a table whose archive was abandoned (or a moved one that should be written again):
-- drops both freeze triggers. A verified archive of it is then dropped only after a count.
CREATE OR REPLACE FUNCTION partition_archiver.unfreeze(p_table regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('DROP TRIGGER IF EXISTS partition_archiver_frozen ON %s', p_table);
  EXECUTE format('DROP TRIGGER IF EXISTS partition_archiver_frozen_rows ON %s', p_table);
END $$;

-- NULL unless the table is frozen: both triggers in place, ENABLE ALWAYS, calling these functions,
-- and the table detached.
CREATE OR REPLACE FUNCTION partition_archiver.freeze_mark(p_table regclass) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT concat_ws('/', s.oid, s.xmin, r.oid, r.xmin, fs.xmin, fr.xmin, c.xmin)
    FROM pg_class c, pg_trigger s, pg_trigger r, pg_proc fs, pg_proc fr
   WHERE c.oid = p_table AND NOT c.relispartition
     AND fs.oid = 'partition_archiver.refuse_writes()'::regprocedure
     AND fr.oid = 'partition_archiver.refuse_row_writes()'::regprocedure
     AND s.tgrelid = p_table AND s.tgname = 'partition_archiver_frozen' AND s.tgenabled = 'A' AND s.tgfoid = fs.oid
     AND r.tgrelid = p_table AND r.tgname = 'partition_archiver_frozen_rows' AND r.tgenabled = 'A' AND r.tgfoid = fr.oid
$$;

CREATE OR REPLACE FUNCTION partition_archiver.freeze(
  p_table regclass, p_table_schema text, p_table_name text, p_partition text
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  v_recorded text;
  v_state    text;
  v_mark     text;
BEGIN
  SELECT m.frozen_by, m.state INTO v_recorded, v_state
    FROM partition_archiver.archive_manifest m
   WHERE m.table_schema = p_table_schema AND m.table_name = p_table_name AND m.partition_name = p_partition
     FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no archive manifest row for %: it was not detached by partition-archiver', p_table
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  IF v_recorded IS NOT NULL AND v_recorded = partition_archiver.freeze_mark(p_table) THEN
    RETURN v_recorded;  -- frozen, untouched since: nothing to do
  END IF;
  EXECUTE format('CREATE OR REPLACE TRIGGER partition_archiver_frozen BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s '
                 'FOR EACH STATEMENT EXECUTE FUNCTION partition_archiver.refuse_writes()', p_table);
  EXECUTE format('CREATE OR REPLACE TRIGGER partition_archiver_frozen_rows BEFORE INSERT OR UPDATE OR DELETE ON %s '
                 'FOR EACH ROW EXECUTE FUNCTION partition_archiver.refuse_row_writes()', p_table);
  EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER partition_archiver_frozen', p_table);
  EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER partition_archiver_frozen_rows', p_table);
  -- A proof only when nothing was copied before this freeze: the first one, while 'detached'.
  v_mark := CASE WHEN v_recorded IS NULL AND v_state = 'detached' THEN partition_archiver.freeze_mark(p_table)
                 ELSE 'unproven' END;
  UPDATE partition_archiver.archive_manifest SET frozen_by = v_mark
   WHERE table_schema = p_table_schema AND table_name = p_table_name AND partition_name = p_partition;
  RETURN v_mark;
END $$;

CREATE OR REPLACE FUNCTION partition_archiver.require_unchanged(p_table regclass, p_expected bigint, p_frozen_by text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF p_frozen_by IS NOT NULL AND p_frozen_by = partition_archiver.freeze_mark(p_table) THEN
    RETURN;  -- frozen before the first COPY and untouched since: no row was written by name
  END IF;
  PERFORM partition_archiver.require_row_count(p_table, p_expected);
END $$;
