-- Writes into a frozen table by another trigger, recorded, so an archive made of several chunks
-- (several COPYs, in several transactions, perhaps hours apart) never misses a row.
--
-- The freeze lets writes made by another trigger through (pg_trigger_depth() > 1): foreign-key
-- actions (ON DELETE SET NULL / SET DEFAULT, ON UPDATE CASCADE), which a detached table keeps
-- from its parent, must not make the application's writes to other tables fail. But an UPDATE
-- writes a new version of the row, which PostgreSQL may put in any page with free space: in a
-- block range whose chunk is already copied, while the old version, in a range not copied yet, is
-- dead by the time that chunk's COPY reads it. The row would then be in neither the archive nor,
-- after a DROP that trusts the freeze mark (20261206000003), the table: the mark skips the count,
-- which would have seen one row more than archived (unless another row moved the other way). An
-- INSERT by a trigger can land in a copied range the same way.
--
-- So refuse_row_writes() records, once per transaction and table, that a trigger inserted or
-- updated rows (a DELETE is not recorded: a row deleted after its chunk was copied is still in the
-- archive; one deleted before was gone): a row appended to frozen_writes, never an update of a
-- shared row, so the application's transactions neither wait for each other on it nor fail to
-- serialize. A chunk plan records how many there were when it was made
-- (archive_manifest.rel_writes); every chunk compares that, as it compares the relation's filenode
-- and block count, before its COPY and after its count, and another number starts the archive
-- again under a new plan, as a rewrite does. At the DROP, require_unchanged() also compares it: a
-- write after the last chunk costs the table's count(*) (require_row_count), as a changed freeze
-- mark does.
--
-- The function is SECURITY DEFINER so the write is recorded whoever's write fires it (a
-- foreign-key action runs as the owner of the table it changes), with a fixed search_path.
--
-- Replacing refuse_row_writes() gives its pg_proc row a new xmin, so every freeze mark recorded
-- before this migration no longer matches: an archive under way when it is applied is counted
-- once before its DROP (require_row_count), as one frozen by an earlier version is.
--
-- Also: an archive whose DETACH ... CONCURRENTLY was finalized by a later run starts from the
-- state `detaching` (nothing of it is copied before its plan); freeze() now records its proof then
-- too, instead of 'unproven' (which made its DROP count the whole table).
-- Idempotent.

CREATE TABLE IF NOT EXISTS partition_archiver.frozen_writes (
  relid       oid         NOT NULL,
  written_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS frozen_writes_relid ON partition_archiver.frozen_writes (relid);

COMMENT ON TABLE partition_archiver.frozen_writes IS
  'One row per transaction in which another trigger (a foreign-key action) inserted or updated rows of a frozen table (its oid).';

ALTER TABLE partition_archiver.archive_manifest ADD COLUMN IF NOT EXISTS rel_writes bigint;

COMMENT ON COLUMN partition_archiver.archive_manifest.rel_writes IS
  'frozen_writes_of() the table when the current chunk plan was made (NULL: a plan of an earlier version).';

-- How many transactions a trigger wrote rows of `p_table` in: only ever grows (until its DROP).
CREATE OR REPLACE FUNCTION partition_archiver.frozen_writes_of(p_table regclass) RETURNS bigint
LANGUAGE sql STABLE AS $$
  SELECT count(*) FROM partition_archiver.frozen_writes w WHERE w.relid = p_table
$$;

CREATE OR REPLACE FUNCTION partition_archiver.refuse_row_writes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF (SELECT c.relispartition FROM pg_class c WHERE c.oid = TG_RELID) THEN
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;
  IF pg_trigger_depth() > 1 THEN
    -- Once per transaction (a setting local to it; rolled back with it) and table; not for a
    -- table moved to the historical schema (no DROP follows, and it stays frozen for years).
    IF TG_OP <> 'DELETE' AND current_setting('partition_archiver.wrote_' || TG_RELID, true) IS DISTINCT FROM 'on' THEN
      PERFORM set_config('partition_archiver.wrote_' || TG_RELID, 'on', true);
      IF NOT EXISTS (SELECT 1 FROM partition_archiver.archive_manifest m
                      WHERE m.partition_schema = TG_TABLE_SCHEMA AND m.partition_name = TG_TABLE_NAME
                        AND m.state = 'moved') THEN
        INSERT INTO partition_archiver.frozen_writes (relid) VALUES (TG_RELID);
      END IF;
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;
  RAISE EXCEPTION 'table %.% was detached for archiving by partition-archiver: writes are refused',
                  TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = 'object_not_in_prerequisite_state',
          HINT = 'Restore the partition from its archive to change it, or SELECT partition_archiver.unfreeze(''schema.table'') if its archive was abandoned.';
END $$;

-- As in 20261206000003, with the trigger writes since the plan: the catalog rows alone prove the
-- table unchanged only when no trigger wrote a row into it since.
CREATE OR REPLACE FUNCTION partition_archiver.require_unchanged(
  p_table regclass, p_expected bigint, p_frozen_by text, p_writes bigint
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF p_frozen_by IS NOT NULL AND p_frozen_by = partition_archiver.freeze_mark(p_table)
     AND partition_archiver.frozen_writes_of(p_table) = coalesce(p_writes, 0) THEN
    RETURN;  -- frozen before the first COPY, untouched since, no row written by a trigger since the plan
  END IF;
  PERFORM partition_archiver.require_row_count(p_table, p_expected);
END $$;

-- The form an earlier version's binary calls: the same check, as for a plan that recorded none.
CREATE OR REPLACE FUNCTION partition_archiver.require_unchanged(p_table regclass, p_expected bigint, p_frozen_by text)
RETURNS void LANGUAGE sql AS $$
  SELECT partition_archiver.require_unchanged(p_table, p_expected, p_frozen_by, NULL::bigint)
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
  -- A proof only when nothing was copied before this freeze: the first one, while 'detached' (or
  -- 'detaching', a DETACH CONCURRENTLY finalized by a later run; no plan yet either way).
  v_mark := CASE WHEN v_recorded IS NULL AND v_state IN ('detaching', 'detached')
                 THEN partition_archiver.freeze_mark(p_table) ELSE 'unproven' END;
  UPDATE partition_archiver.archive_manifest SET frozen_by = v_mark
   WHERE table_schema = p_table_schema AND table_name = p_table_name AND partition_name = p_partition;
  RETURN v_mark;
END $$;
