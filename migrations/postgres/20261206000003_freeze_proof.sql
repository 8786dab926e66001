-- The freeze as proof, so a DROP needs no scan of the table (a 500 GB partition's count(*) fits no
-- Lambda invocation).
--
-- freeze() creates the freeze trigger (20250801000003) ENABLE ALWAYS, so it also fires for
-- sessions in session_replication_role = replica, and records in archive_manifest.frozen_by the
-- trigger's pg_trigger row as it is then (oid:xmin), in the same transaction, before the first COPY
-- of the archive. Any change to the trigger since (dropped, disabled, re-enabled, replaced) gives
-- its row a new xmin or removes it. So while freeze_mark() of the table equals frozen_by, no write
-- by name has reached the table since its rows were first copied, and require_unchanged(), the last
-- check before the DROP, reads only that catalog row. When it differs, or was never recorded (a
-- table frozen by an earlier version; a trigger found changed after the archive began, recorded
-- as 'unproven'), it falls back to require_row_count(), which scans the table, as before.
-- Idempotent.

ALTER TABLE partition_archiver.archive_manifest ADD COLUMN IF NOT EXISTS frozen_by text;

COMMENT ON COLUMN partition_archiver.archive_manifest.frozen_by IS
  'The freeze trigger (pg_trigger oid:xmin) as created before the first COPY of the archive, or ''unproven''.';

CREATE OR REPLACE FUNCTION partition_archiver.freeze_mark(p_table regclass) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT t.oid::text || ':' || t.xmin::text
    FROM pg_trigger t
   WHERE t.tgrelid = p_table AND t.tgname = 'partition_archiver_frozen' AND t.tgenabled = 'A'
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
  EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER partition_archiver_frozen', p_table);
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
