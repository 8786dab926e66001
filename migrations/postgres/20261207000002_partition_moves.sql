-- The SQL path (pg_cron) creates partitions as the binary does (src/pg/partitions.rs):
-- * Rows of a new range found in the default partition are moved into the new table BEFORE it is
--   attached: a moved row is the same row, so the parent's row triggers (which ATTACH and
--   PARTITION OF give the partition) must not fire for it. A BEFORE INSERT trigger would change
--   its values, an audit or outbox trigger record an insert that never happened.
-- * A new partition belongs to the parent's owner, not to the role that happened to create it
--   (else the owner's own ALTER TABLE on the parent fails with "must be owner of table ..."),
--   when that can be done (OWNER TO needs the owner's role to be allowed to create in the schema,
--   which PostgreSQL 15's public schema does not give every role): otherwise it stays the
--   creator's, with a NOTICE.
-- * run_maintenance goes on to the next table when one fails (a lock timeout behind a long query,
--   say), with a WARNING: one busy table no longer stops every other table's partitions.
-- Replaces the functions of 20250528000000; idempotent.

-- Gives a table just created to its parent's owner; if PostgreSQL refuses (a permission), it stays
-- the creator's, with a NOTICE: a partition is never left uncreated for its owner.
CREATE OR REPLACE FUNCTION partition_archiver.give_to_owner(p_schema text, p_table text, p_owner text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('ALTER TABLE %I.%I OWNER TO %I', p_schema, p_table, p_owner);
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE '%.% stays owned by %: %', p_schema, p_table, current_user, SQLERRM;
END $$;

CREATE OR REPLACE FUNCTION partition_archiver.create_partitions(
  p_schema text, p_table text, p_now timestamptz DEFAULT partition_archiver.now(), p_back integer DEFAULT 0)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  cfg       partition_archiver.part_config;
  v_parent  regclass;
  v_owner   text;
  v_space   text;
  v_type    regtype;
  v_default regclass;
  v_step    interval;
  v_current timestamp;
  v_from    timestamp;
  v_to      timestamp;
  v_name    text;
  v_lo      text;
  v_hi      text;
  v_cols    text;
  v_moved   bigint;
  v_created integer := 0;
  v_made    boolean;
BEGIN
  SELECT * INTO cfg FROM partition_archiver.part_config WHERE schema_name = p_schema AND table_name = p_table;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'table %.% is not registered in partition_archiver.part_config', p_schema, p_table;
  END IF;
  SELECT c.oid, pg_get_userbyid(c.relowner), t.spcname INTO v_parent, v_owner, v_space
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace
   WHERE n.nspname = p_schema AND c.relname = p_table AND c.relkind = 'p';
  IF v_parent IS NULL THEN
    RAISE EXCEPTION 'table %.% does not exist or is not partitioned', p_schema, p_table;
  END IF;
  SELECT a.atttypid::regtype INTO v_type FROM pg_attribute a
   WHERE a.attrelid = v_parent AND a.attname = cfg.partition_column AND NOT a.attisdropped;
  IF v_type IS NULL OR v_type NOT IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype) THEN
    RAISE EXCEPTION 'partition column %.%.% must be timestamptz, timestamp or date', p_schema, p_table, cfg.partition_column;
  END IF;
  -- Never at the same time as a partition-archiver run on this table (same advisory lock key).
  IF NOT pg_try_advisory_xact_lock(1346458179, hashtext(p_schema || '.' || p_table)) THEN
    RAISE NOTICE '%.%: a partition-archiver run holds the table lock; skipped', p_schema, p_table;
    RETURN 0;
  END IF;
  -- DDL must never queue application traffic behind it for long.
  PERFORM set_config('lock_timeout', '2s', true);
  IF cfg.create_default THEN
    v_made := partition_archiver.ensure_default_partition(p_schema, p_table);
    IF v_made AND v_owner <> current_user THEN
      PERFORM partition_archiver.give_to_owner(p_schema, p_table || '_default', v_owner);
    END IF;
  END IF;
  v_default := partition_archiver.default_partition(v_parent);
  v_step := partition_archiver.period_step(cfg.partition_interval);
  v_current := partition_archiver.period_start(cfg.partition_interval, cfg.time_zone, p_now);
  SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO v_cols
    FROM pg_attribute WHERE attrelid = v_parent AND attnum > 0 AND NOT attisdropped AND attgenerated = '';

  FOR i IN -p_back .. cfg.premake LOOP
    v_from := v_current + i * v_step;
    v_to   := v_from + v_step;
    v_name := partition_archiver.partition_name(p_table, cfg.partition_interval, v_from);
    CONTINUE WHEN EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE n.nspname = p_schema AND c.relname = v_name);
    v_lo := partition_archiver.bound_literal(v_from, cfg.time_zone, v_type);
    v_hi := partition_archiver.bound_literal(v_to, cfg.time_zone, v_type);
    BEGIN
      v_moved := 0;
      IF v_default IS NOT NULL THEN
        EXECUTE format('SELECT count(*) FROM %s WHERE %I >= %L AND %I < %L',
                       v_default, cfg.partition_column, v_lo, cfg.partition_column, v_hi) INTO v_moved;
      END IF;
      IF v_moved > 0 THEN
        -- The default partition holds rows of this range: creating the partition directly would
        -- fail. Detach the default, create the table, move the rows into it, attach both.
        EXECUTE format('ALTER TABLE %I.%I DETACH PARTITION %s', p_schema, p_table, v_default);
        EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                       'INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMPRESSION)%s',
                       p_schema, v_name, p_schema, p_table,
                       CASE WHEN v_space IS NOT NULL THEN format(' TABLESPACE %I', v_space) ELSE '' END);
        EXECUTE format('WITH moved AS (DELETE FROM %s WHERE %I >= %L AND %I < %L RETURNING %s) '
                       'INSERT INTO %I.%I (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM moved',
                       v_default, cfg.partition_column, v_lo, cfg.partition_column, v_hi, v_cols,
                       p_schema, v_name, v_cols, v_cols);
        GET DIAGNOSTICS v_moved = ROW_COUNT;
        EXECUTE format('ALTER TABLE %I.%I ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                       p_schema, p_table, p_schema, v_name, v_lo, v_hi);
        EXECUTE format('ALTER TABLE %I.%I ATTACH PARTITION %s DEFAULT', p_schema, p_table, v_default);
        RAISE NOTICE 'created %.% and moved % rows into it from %', p_schema, v_name, v_moved, v_default;
      ELSE
        EXECUTE format('CREATE TABLE %I.%I PARTITION OF %I.%I FOR VALUES FROM (%L) TO (%L)',
                       p_schema, v_name, p_schema, p_table, v_lo, v_hi);
      END IF;
      IF v_owner <> current_user THEN
        PERFORM partition_archiver.give_to_owner(p_schema, v_name, v_owner);
      END IF;
      v_created := v_created + 1;
    EXCEPTION WHEN invalid_object_definition THEN
      -- "partition ... would overlap partition ...": an existing partition already covers the range.
      RAISE NOTICE 'skipped %.%: %', p_schema, v_name, SQLERRM;
    END;
  END LOOP;
  RETURN v_created;
END $$;

-- Runs create_partitions for every enabled table with a timestamp or date key (epoch and UUIDv7
-- keys are the binary's), each in its own subtransaction: a table that fails (a lock timeout, a
-- row in the default partition its move cannot take) is rolled back alone, with a WARNING, and
-- the next table goes on. Schedule it with pg_cron, for example:
--   SELECT cron.schedule('partition-archiver', '0 3 * * *', 'SELECT partition_archiver.run_maintenance()');
CREATE OR REPLACE FUNCTION partition_archiver.run_maintenance(p_now timestamptz DEFAULT partition_archiver.now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  r record;
  v_total integer := 0;
BEGIN
  FOR r IN SELECT c.schema_name, c.table_name FROM partition_archiver.part_config c
            WHERE c.enabled AND c.epoch IS NULL ORDER BY 1, 2 LOOP
    BEGIN
      v_total := v_total + partition_archiver.create_partitions(r.schema_name, r.table_name, p_now);
    EXCEPTION WHEN OTHERS THEN
      RAISE WARNING 'partition_archiver.run_maintenance: %.% failed, the other tables go on: % (SQLSTATE %)',
                    r.schema_name, r.table_name, SQLERRM, SQLSTATE;
    END;
  END LOOP;
  RETURN v_total;
END $$;
